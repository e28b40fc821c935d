// Readers for the multiple-choice benchmarks in their official file layouts (see each data folder's
// SOURCES.md): C-Eval, MMLU, CMMLU (CSV), GAOKAO-Bench and AGIEval (JSON). Each returns one Subject per
// subject/task file, sorted by name, with its few-shot examples and its scored items.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace baichuan::eval {

struct Question {
  std::string id;  // the row id / index from the file, for reports
  std::string question;
  std::array<std::string, 4> choices;  // A, B, C, D
  char answer = 'A';                   // 'A'..'D'
};

struct Subject {
  std::string name;          // file stem: "high_school_physics", "2010-2022_Biology_MCQs", "logiqa-zh"
  std::string display_name;  // as the prompt names it: "高中物理", "high school physics", ...
  std::string category;      // C-Eval/CMMLU category ("STEM", ...); empty where the benchmark has none
  std::vector<Question> shots;
  std::vector<Question> items;  // scored
  size_t skipped = 0;           // items left out as not 4-option single-answer (GAOKAO, AGIEval)
};

// An empty `subjects` means every subject present; a name that is not present is an Error.
// C-Eval: dev/<s>_dev.csv are the shots, val/<s>_val.csv is scored (test has no answers); names and
// categories from subject_mapping.json.
std::vector<Subject> read_ceval(const std::string& dir, const std::vector<std::string>& subjects = {});
// MMLU: dev/<s>_dev.csv shots, <split>/<s>_<split>.csv scored (headerless). The display name is the
// subject with '_' as spaces; no category.
std::vector<Subject> read_mmlu(const std::string& dir, const std::vector<std::string>& subjects = {},
                               const std::string& split = "val");
// CMMLU: dev/<s>.csv shots, test/<s>.csv scored; Chinese names from subject_mapping.json (name_en2zh),
// category = the category of the subject's first subcategory.
std::vector<Subject> read_cmmlu(const std::string& dir, const std::vector<std::string>& subjects = {});

// GAOKAO-Bench and AGIEval publish no few-shot split that Baichuan used (Baichuan's own random split is
// unpublished), so the split here is deterministic: the first kJsonShots usable items of each file are
// the shots and are not scored; the rest are scored.
inline constexpr size_t kJsonShots = 5;
// GAOKAO: the Objective_Questions/<stem>.json files that <dir>/Obj_Prompt.json (GAOKAO-Bench's own
// list) types "single_choice" — not 2010-2022_Physics_MCQs, typed "multi_choice". Without that file:
// the *_MCQs files whose every answer is one letter. Naming another file in `subjects` is an Error that
// says why. Within a file, only items with one answer A-D whose options A-D can be parsed out of the
// question text are used.
inline constexpr std::string_view kGaokaoObjPrompt = "Obj_Prompt.json";
std::vector<Subject> read_gaokao(const std::string& dir, const std::vector<std::string>& subjects = {});
// AGIEval, as OpenCompass builds it: v1/<task>.jsonl; only items with exactly 4 options and one label.
// The question is passage + question with no separator; each option loses exactly one leading "(X)"
// label and is otherwise verbatim (no trimming). The display name is the exam in Chinese
// (logiqa-en: "公务员", sat-math: "SAT数学", ...).
std::vector<Subject> read_agieval(const std::string& dir, const std::vector<std::string>& subjects = {});

// Splits GAOKAO question text into stem and the options A-D (the last "A．…B．…C．…D．…" run, with
// "．" or "." after the letter). False when the options cannot be found.
bool split_gaokao_options(const std::string& text, std::string& stem, std::array<std::string, 4>& choices);

// Helpers shared by the readers.
char parse_answer_letter(const std::string& s, const std::string& where);  // Error unless A-D
std::vector<std::string> select_subjects(const std::vector<std::string>& present,
                                         const std::vector<std::string>& wanted, const std::string& what);
std::vector<std::string> list_files(const std::string& dir, const std::string& suffix);  // stems, sorted

}  // namespace baichuan::eval
