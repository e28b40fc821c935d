// The result of one `baichuan eval` run: every item's prediction (so runs can be diffed), the score
// per subject and the averages each benchmark defines; JSON in and out, text tables, and two or more
// runs side by side.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace baichuan::eval {

// ceval | mmlu | cmmlu | gaokao | agieval | bbh; throws Error naming the value otherwise.
std::string parse_task(const std::string& name);
bool is_multiple_choice(const std::string& task);  // all but bbh

struct ItemRecord {
  std::string subject, id;
  std::string target, prediction;  // answer letters; for BBH the target and the extracted answer
  bool correct = false;
  int64_t prompt_tokens = 0, shots = 0;
  std::array<float, 4> logits{};  // multiple choice: of the A, B, C, D tokens
  std::string output;             // BBH: the generated continuation
  // The exact prompt the model was given, so a run can be audited (for a prompt cut to its last
  // tokens, the text of those tokens). Empty in reports written before it was recorded.
  std::string prompt;
};

struct SubjectScore {
  std::string name, display_name, category;
  int64_t correct = 0, total = 0, skipped = 0;  // skipped: items the reader left out
  double accuracy() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

struct Average {
  std::string name;  // "Average", or a category ("STEM", ...)
  double accuracy = 0;
  int64_t subjects = 0, questions = 0;
};

struct EvalReport {
  std::string task, model, data;
  int64_t shots = 0;
  std::vector<int32_t> choice_ids;  // multiple choice: the token ids of A, B, C, D
  std::vector<SubjectScore> subjects;
  std::vector<ItemRecord> items;
  std::vector<std::string> notes;  // what a reader of the numbers must know (shot order, splits, ...)
  double seconds = 0;
  int64_t prompt_tokens = 0, reused_tokens = 0;  // over all items; reused: from the previous item's KV cache
};

// The averages as each benchmark defines them: MMLU over questions; C-Eval, CMMLU, GAOKAO, AGIEval and
// BBH over subjects (C-Eval's leaderboard average is the mean of its 52 subject accuracies), and for
// C-Eval and CMMLU also per category, over the subjects in it. "Average" comes first.
std::vector<Average> benchmark_averages(const EvalReport& report);

nlohmann::json to_json(const EvalReport& report);
// to_json as the text of a --json file; bytes that are not UTF-8 (a benchmark file in another
// encoding) become U+FFFD instead of failing the write at the end of a run.
std::string report_json_text(const EvalReport& report);
// Throws Error naming `where` and the field at fault.
EvalReport report_from_json(const nlohmann::json& j, const std::string& where);
EvalReport read_report(const std::string& path);

// Per-subject accuracy table with the averages below it.
std::string format_table(const EvalReport& report);
// Runs of one task side by side (accuracy per subject and average, with labels as column heads), and
// for two runs how many predictions differ.
std::string format_comparison(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels);

}  // namespace baichuan::eval
