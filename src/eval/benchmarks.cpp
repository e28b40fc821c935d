// The CSV benchmarks (C-Eval, MMLU, CMMLU) and the helpers all readers share.
#include "eval/benchmarks.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "eval/csv.h"

namespace baichuan::eval {

namespace fs = std::filesystem;

char parse_answer_letter(const std::string& s, const std::string& where) {
  std::string t = s;
  while (!t.empty() && (t.back() == ' ' || t.back() == '\r' || t.back() == '\n')) t.pop_back();
  while (!t.empty() && t.front() == ' ') t.erase(t.begin());
  if (t.size() != 1 || t[0] < 'A' || t[0] > 'D') fail(where, ": answer '", s, "' is not one of A, B, C, D");
  return t[0];
}

std::vector<std::string> list_files(const std::string& dir, const std::string& suffix) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, ": no such directory");
  std::vector<std::string> stems;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.size() > suffix.size() && name.ends_with(suffix))
      stems.push_back(name.substr(0, name.size() - suffix.size()));
  }
  std::sort(stems.begin(), stems.end());
  return stems;
}

std::vector<std::string> select_subjects(const std::vector<std::string>& present,
                                         const std::vector<std::string>& wanted, const std::string& what) {
  if (wanted.empty()) return present;
  for (const auto& w : wanted)
    if (std::find(present.begin(), present.end(), w) == present.end())
      fail(what, ": no subject '", w, "' (present: ", present.size(), " subjects)");
  return wanted;
}

namespace {

// Reads rows of a multiple-choice CSV: `first` is the column of the question, followed by A-D and the
// answer. `header` (when non-empty) must be the first row's leading columns.
std::vector<Question> read_choice_csv(const std::string& path, const std::vector<std::string>& header,
                                      size_t first, size_t min_fields) {
  std::vector<CsvRow> rows = read_csv(path);
  size_t start = 0;
  if (!header.empty()) {
    if (rows.empty()) fail(path, ": empty file, expected a header row");
    const auto& h = rows[0].fields;
    for (size_t i = 0; i < header.size(); ++i)
      if (i >= h.size() || h[i] != header[i])
        fail(path, ":1: header column ", i + 1, " is '", i < h.size() ? h[i] : std::string(), "', expected '",
             header[i], "'");
    start = 1;
  }
  std::vector<Question> out;
  for (size_t r = start; r < rows.size(); ++r) {
    const auto& f = rows[r].fields;
    std::string where = cat(path, ":", rows[r].line);
    if (f.size() < min_fields) fail(where, ": expected ", min_fields, " fields, got ", f.size());
    Question q;
    q.id = first > 0 ? f[0] : std::to_string(r - start);
    q.question = f[first];
    for (size_t c = 0; c < 4; ++c) q.choices[c] = f[first + 1 + c];
    q.answer = parse_answer_letter(f[first + 5], where);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace

std::vector<Subject> read_ceval(const std::string& dir, const std::vector<std::string>& subjects) {
  const std::string mapping_path = dir + "/subject_mapping.json";
  nlohmann::json mapping = read_json_file(mapping_path);
  const std::vector<std::string> header = {"id", "question", "A", "B", "C", "D", "answer"};
  std::vector<Subject> out;
  for (const auto& name : select_subjects(list_files(dir + "/val", "_val.csv"), subjects, dir)) {
    auto it = mapping.find(name);
    if (it == mapping.end() || !it->is_array() || it->size() < 3 || !(*it)[1].is_string() || !(*it)[2].is_string())
      fail(mapping_path, ": no [english, chinese, category] entry for subject '", name, "'");
    Subject s;
    s.name = name;
    s.display_name = (*it)[1].get<std::string>();
    s.category = (*it)[2].get<std::string>();
    s.shots = read_choice_csv(dir + "/dev/" + name + "_dev.csv", header, 1, 7);
    s.items = read_choice_csv(dir + "/val/" + name + "_val.csv", header, 1, 7);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Subject> read_mmlu(const std::string& dir, const std::vector<std::string>& subjects,
                               const std::string& split) {
  std::vector<Subject> out;
  const std::string suffix = "_" + split + ".csv";
  for (const auto& name : select_subjects(list_files(dir + "/" + split, suffix), subjects, dir)) {
    Subject s;
    s.name = name;
    s.display_name = name;
    std::replace(s.display_name.begin(), s.display_name.end(), '_', ' ');
    s.shots = read_choice_csv(dir + "/dev/" + name + "_dev.csv", {}, 0, 6);
    s.items = read_choice_csv(dir + "/" + split + "/" + name + suffix, {}, 0, 6);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Subject> read_cmmlu(const std::string& dir, const std::vector<std::string>& subjects) {
  const std::string mapping_path = dir + "/subject_mapping.json";
  const nlohmann::json mapping = read_json_file(mapping_path);
  const std::vector<std::string> header = {"", "Question", "A", "B", "C", "D", "Answer"};
  std::vector<Subject> out;
  for (const auto& name : select_subjects(list_files(dir + "/test", ".csv"), subjects, dir)) {
    Subject s;
    s.name = name;
    const auto zh = mapping.find("name_en2zh");
    if (zh == mapping.end() || !zh->contains(name) || !(*zh)[name].is_string())
      fail(mapping_path, ": name_en2zh has no entry for '", name, "'");
    s.display_name = (*zh)[name].get<std::string>();
    // Category: the one whose list holds the subject's first subcategory ("China specific" is a second
    // label in CMMLU, reported apart by its authors).
    const auto subcats = mapping.find("subcategories");
    const auto categories = mapping.find("categories");
    if (subcats != mapping.end() && categories != mapping.end() && subcats->contains(name) &&
        (*subcats)[name].is_array() && !(*subcats)[name].empty()) {
      const auto& first = (*subcats)[name][0];
      for (const auto& [category, list] : categories->items())
        if (list.is_array() && std::find(list.begin(), list.end(), first) != list.end()) {
          s.category = category;
          break;
        }
    }
    s.shots = read_choice_csv(dir + "/dev/" + name + ".csv", header, 1, 7);
    s.items = read_choice_csv(dir + "/test/" + name + ".csv", header, 1, 7);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace baichuan::eval
