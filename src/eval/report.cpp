#include "eval/report.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "core/json_file.h"
#include "eval/benchmarks.h"

namespace baichuan::eval {

namespace {

const std::vector<std::string> kTasks = {"ceval", "mmlu", "cmmlu", "gaokao", "agieval", "bbh"};

std::string percent(double accuracy) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f", 100 * accuracy);
  return s;
}

std::string pad(const std::string& s, size_t width) { return s.size() >= width ? s : s + std::string(width - s.size(), ' '); }
std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

Average macro_average(const std::string& name, const std::vector<const SubjectScore*>& subjects) {
  Average a{name, 0, 0, 0};
  for (const SubjectScore* s : subjects) {
    if (s->total == 0) continue;
    a.accuracy += s->accuracy();
    ++a.subjects;
    a.questions += s->total;
  }
  if (a.subjects) a.accuracy /= static_cast<double>(a.subjects);
  return a;
}

template <typename T>
T field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) fail(where, ": missing field '", key, "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(where, ": field '", key, "' has the wrong type (", j.at(key).type_name(), ")");
  }
}

}  // namespace

std::string parse_task(const std::string& name) {
  if (std::find(kTasks.begin(), kTasks.end(), name) == kTasks.end())
    fail("unknown task '", name, "' (expected ceval, mmlu, cmmlu, gaokao, agieval or bbh)");
  return name;
}

bool is_multiple_choice(const std::string& task) { return task != "bbh"; }

std::vector<Average> benchmark_averages(const EvalReport& report) {
  std::vector<const SubjectScore*> all;
  for (const auto& s : report.subjects) all.push_back(&s);
  std::vector<Average> out;
  if (report.task == "mmlu") {  // Hendrycks' evaluate.py: the mean over every question
    Average a{"Average", 0, 0, 0};
    int64_t correct = 0;
    for (const auto& s : report.subjects) {
      correct += s.correct;
      a.questions += s.total;
      a.subjects += s.total > 0;
    }
    a.accuracy = a.questions ? static_cast<double>(correct) / static_cast<double>(a.questions) : 0;
    out.push_back(a);
    return out;
  }
  out.push_back(macro_average("Average", all));
  if (report.task == "ceval" || report.task == "cmmlu") {
    // The benchmarks' own order, then any other category in order of appearance.
    std::vector<std::string> categories = {"STEM", "Social Science", "Humanities", "Other", "China specific"};
    std::erase_if(categories, [&](const std::string& c) {
      return std::none_of(report.subjects.begin(), report.subjects.end(), [&](auto& s) { return s.category == c; });
    });
    for (const auto& s : report.subjects)
      if (!s.category.empty() && std::find(categories.begin(), categories.end(), s.category) == categories.end())
        categories.push_back(s.category);
    for (const auto& c : categories) {
      std::vector<const SubjectScore*> in;
      for (const auto& s : report.subjects)
        if (s.category == c) in.push_back(&s);
      out.push_back(macro_average(c, in));
    }
  }
  return out;
}

nlohmann::json to_json(const EvalReport& r) {
  nlohmann::json subjects = nlohmann::json::array(), items = nlohmann::json::array(), averages = nlohmann::json::array();
  for (const auto& s : r.subjects)
    subjects.push_back({{"name", s.name},
                        {"display_name", s.display_name},
                        {"category", s.category},
                        {"correct", s.correct},
                        {"total", s.total},
                        {"skipped", s.skipped},
                        {"accuracy", s.accuracy()}});
  for (const auto& a : benchmark_averages(r))
    averages.push_back({{"name", a.name}, {"accuracy", a.accuracy}, {"subjects", a.subjects}, {"questions", a.questions}});
  for (const auto& i : r.items) {
    nlohmann::json item = {{"subject", i.subject},          {"id", i.id},
                           {"target", i.target},            {"prediction", i.prediction},
                           {"correct", i.correct},          {"prompt_tokens", i.prompt_tokens},
                           {"shots", i.shots}};
    if (is_multiple_choice(r.task))
      item["logits"] = i.logits;
    else
      item["output"] = i.output;
    if (!i.prompt.empty()) item["prompt"] = i.prompt;  // absent from a report read from an older file
    items.push_back(item);
  }
  return {{"task", r.task},     {"model", r.model},       {"data", r.data},   {"shots", r.shots},
          {"choice_ids", r.choice_ids}, {"notes", r.notes}, {"seconds", r.seconds},
          {"prompt_tokens", r.prompt_tokens}, {"reused_tokens", r.reused_tokens},
          {"averages", averages}, {"subjects", subjects}, {"items", items}};
}

EvalReport report_from_json(const nlohmann::json& j, const std::string& where) {
  EvalReport r;
  r.task = parse_task(field<std::string>(j, "task", where));
  r.model = field<std::string>(j, "model", where);
  r.data = field<std::string>(j, "data", where);
  r.shots = field<int64_t>(j, "shots", where);
  r.choice_ids = field<std::vector<int32_t>>(j, "choice_ids", where);
  r.notes = field<std::vector<std::string>>(j, "notes", where);
  r.seconds = field<double>(j, "seconds", where);
  r.prompt_tokens = field<int64_t>(j, "prompt_tokens", where);
  r.reused_tokens = field<int64_t>(j, "reused_tokens", where);
  const auto subjects = field<nlohmann::json>(j, "subjects", where);
  const auto items = field<nlohmann::json>(j, "items", where);
  if (!subjects.is_array() || !items.is_array()) fail(where, ": 'subjects' and 'items' must be arrays");
  for (size_t k = 0; k < subjects.size(); ++k) {
    const std::string at = where + ": subjects[" + std::to_string(k) + "]";
    const auto& s = subjects[k];
    r.subjects.push_back({field<std::string>(s, "name", at), field<std::string>(s, "display_name", at),
                          field<std::string>(s, "category", at), field<int64_t>(s, "correct", at),
                          field<int64_t>(s, "total", at), field<int64_t>(s, "skipped", at)});
  }
  for (size_t k = 0; k < items.size(); ++k) {
    const std::string at = where + ": items[" + std::to_string(k) + "]";
    const auto& i = items[k];
    ItemRecord item;
    item.subject = field<std::string>(i, "subject", at);
    item.id = field<std::string>(i, "id", at);
    item.target = field<std::string>(i, "target", at);
    item.prediction = field<std::string>(i, "prediction", at);
    item.correct = field<bool>(i, "correct", at);
    item.prompt_tokens = field<int64_t>(i, "prompt_tokens", at);
    item.shots = field<int64_t>(i, "shots", at);
    if (is_multiple_choice(r.task))
      item.logits = field<std::array<float, 4>>(i, "logits", at);
    else
      item.output = field<std::string>(i, "output", at);
    if (i.contains("prompt")) item.prompt = field<std::string>(i, "prompt", at);  // optional: older files lack it
    r.items.push_back(std::move(item));
  }
  return r;
}

std::string report_json_text(const EvalReport& report) {
  return to_json(report).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

EvalReport read_report(const std::string& path) { return report_from_json(read_json_file(path), path); }

std::string format_table(const EvalReport& r) {
  size_t w = 8;
  for (const auto& s : r.subjects) w = std::max(w, s.name.size());
  const bool categories = std::any_of(r.subjects.begin(), r.subjects.end(), [](auto& s) { return !s.category.empty(); });
  std::string out = pad("subject", w) + (categories ? "  " + pad("category", 14) : "") + "  correct/total  accuracy  name\n";
  for (const auto& s : r.subjects) {
    out += pad(s.name, w) + (categories ? "  " + pad(s.category, 14) : "") + "  " +
           pad_left(std::to_string(s.correct) + "/" + std::to_string(s.total), 13) + "  " +
           pad_left(s.total ? percent(s.accuracy()) : "-", 8) + "  " + s.display_name;
    if (s.skipped) out += " (" + std::to_string(s.skipped) + " items skipped by the reader)";
    out += "\n";
  }
  out += "\n";
  for (const auto& a : benchmark_averages(r))
    out += cat(pad(a.name, w), "  ", pad_left(percent(a.accuracy), 8), "  (", a.subjects,
               a.subjects == 1 ? " subject, " : " subjects, ", a.questions, " questions)\n");
  return out;
}

std::string format_comparison(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels) {
  if (runs.empty()) return "";
  for (const auto& r : runs)
    if (r.task != runs[0].task) fail("--compare: the runs are of different tasks (", runs[0].task, ", ", r.task, ")");
  size_t w = 8, col = 10;
  std::vector<std::string> subjects;  // union, in first-seen order
  for (const auto& r : runs)
    for (const auto& s : r.subjects)
      if (std::find(subjects.begin(), subjects.end(), s.name) == subjects.end()) {
        subjects.push_back(s.name);
        w = std::max(w, s.name.size());
      }
  for (const auto& l : labels) col = std::max(col, l.size() + 2);
  std::string out = pad("subject", w);
  for (const auto& l : labels) out += pad_left(l, col);
  out += "\n";
  for (const auto& name : subjects) {
    out += pad(name, w);
    for (const auto& r : runs) {
      auto it = std::find_if(r.subjects.begin(), r.subjects.end(), [&](auto& s) { return s.name == name; });
      out += pad_left(it == r.subjects.end() || it->total == 0 ? "-" : percent(it->accuracy()), col);
    }
    out += "\n";
  }
  out += "\n";
  std::vector<std::vector<Average>> averages;
  for (const auto& r : runs) averages.push_back(benchmark_averages(r));
  for (const auto& a : averages[0]) {
    out += pad(a.name, w);
    for (const auto& av : averages) {
      auto it = std::find_if(av.begin(), av.end(), [&](auto& x) { return x.name == a.name; });
      out += pad_left(it == av.end() ? "-" : percent(it->accuracy), col);
    }
    out += "\n";
  }
  if (runs.size() == 2) {  // which items changed their answer
    std::map<std::pair<std::string, std::string>, const ItemRecord*> first;
    for (const auto& i : runs[0].items) first[{i.subject, i.id}] = &i;
    int64_t common = 0, differ = 0, gained = 0, lost = 0;
    for (const auto& i : runs[1].items) {
      auto it = first.find({i.subject, i.id});
      if (it == first.end()) continue;
      ++common;
      if (it->second->prediction != i.prediction) ++differ;
      gained += !it->second->correct && i.correct;
      lost += it->second->correct && !i.correct;
    }
    out += cat("\n", common, " items in both runs: ", differ, " predictions differ; ", labels[1], " is right where ",
               labels[0], " was wrong on ", gained, ", wrong where it was right on ", lost, "\n");
  }
  return out;
}

}  // namespace baichuan::eval
