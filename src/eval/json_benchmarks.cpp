// The JSON benchmarks: GAOKAO-Bench (options embedded in the question text) and AGIEval (JSON Lines).
// Both are scored C-Eval style, so the display name is a Chinese exam name for the header.
#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "eval/benchmarks.h"

namespace baichuan::eval {

namespace {

// Trims ASCII whitespace and the ideographic space U+3000 (common in GAOKAO text).
std::string trim(std::string_view s) {
  auto starts_space = [&](std::string_view t) -> size_t {
    if (t.empty()) return 0;
    if (t[0] == ' ' || t[0] == '\n' || t[0] == '\r' || t[0] == '\t') return 1;
    if (t.starts_with("\xE3\x80\x80")) return 3;
    return 0;
  };
  auto ends_space = [&](std::string_view t) -> size_t {
    if (t.empty()) return 0;
    char c = t.back();
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') return 1;
    if (t.ends_with("\xE3\x80\x80")) return 3;
    return 0;
  };
  while (size_t k = starts_space(s)) s.remove_prefix(k);
  while (size_t k = ends_space(s)) s.remove_suffix(k);
  return std::string(s);
}

// Position of the last option marker for `letter` ("X．" or "X.") that starts before `before`, and its
// length; npos when none. The letter must not follow an ASCII letter or digit ("DNA." is no marker).
std::pair<size_t, size_t> find_marker(const std::string& text, char letter, size_t before) {
  for (size_t p = std::min(before, text.size()); p-- > 0;) {
    if (text[p] != letter) continue;
    if (p > 0 && std::isalnum(static_cast<unsigned char>(text[p - 1]))) continue;
    std::string_view rest(text.data() + p + 1, text.size() - p - 1);
    if (rest.starts_with("\xEF\xBC\x8E")) return {p, 4};  // fullwidth full stop
    if (rest.starts_with(".")) return {p, 2};
  }
  return {std::string::npos, 0};
}

std::string gaokao_display_name(const std::string& stem) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"Biology", "高考生物"},   {"History", "高考历史"},   {"Math_I", "高考数学"},
      {"Math_II", "高考数学"},   {"Geography", "高考地理"}, {"Physics", "高考物理"},
      {"Chemistry", "高考化学"}, {"Chinese", "高考语文"},   {"English", "高考英语"},
      {"Political_Science", "高考政治"}};
  // "2010-2022_Biology_MCQs" -> "Biology"
  std::string core = stem;
  if (size_t u = core.find('_'); u != std::string::npos) core = core.substr(u + 1);
  if (core.ends_with("_MCQs")) core.resize(core.size() - 5);
  for (const auto& [key, zh] : kNames)
    if (core == key || core.starts_with(std::string(key) + "_")) return zh;
  return core;
}

// The exam named in Chinese, as the C-Eval header names its subjects ("以下是中国关于{exam}考试的…").
std::string agieval_display_name(const std::string& task) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"gaokao-chinese", "高考语文"},   {"gaokao-english", "高考英语"},   {"gaokao-geography", "高考地理"},
      {"gaokao-history", "高考历史"},   {"gaokao-biology", "高考生物"},   {"gaokao-chemistry", "高考化学"},
      {"gaokao-physics", "高考物理"},   {"gaokao-mathqa", "高考数学"},    {"logiqa-zh", "公务员"},
      {"logiqa-en", "公务员"},          {"lsat-ar", "LSAT"},              {"lsat-lr", "LSAT"},
      {"lsat-rc", "LSAT"},              {"sat-math", "SAT数学"},          {"sat-en", "SAT英语"},
      {"sat-en-without-passage", "SAT英语"}, {"aqua-rat", "GRE数学"},     {"jec-qa-kd", "司法考试"},
      {"jec-qa-ca", "司法考试"}};
  for (const auto& [key, zh] : kNames)
    if (task == key) return zh;
  return task;  // a task AGIEval does not have: its own name
}

// Drops exactly one leading "(X)" label (any capital: a few gaokao-history items repeat "(C)") and
// nothing else, as the option strings reach the prompt in OpenCompass: spaces after the label, options
// written "A 陈蕊…" without parentheses (logiqa-zh) and padding stay verbatim.
std::string strip_option_label(const std::string& option) {
  if (option.size() >= 3 && option[0] == '(' && option[1] >= 'A' && option[1] <= 'Z' && option[2] == ')')
    return option.substr(3);
  return option;
}

// The first kJsonShots usable questions are shots, the rest scored.
void split_shots(std::vector<Question> usable, Subject& s) {
  size_t k = std::min(kJsonShots, usable.size());
  s.shots.assign(usable.begin(), usable.begin() + k);
  s.items.assign(usable.begin() + k, usable.end());
}

std::string json_string(const nlohmann::json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) fail(where, ": field '", key, "' missing or not a string");
  return it->get<std::string>();
}

// Obj_Prompt.json: {"examples": [{"type": "single_choice", "keyword": "<file stem>", ...}, ...]} -> stem -> type.
std::map<std::string, std::string> read_gaokao_types(const std::string& path) {
  const nlohmann::json doc = read_json_file(path);
  if (!doc.is_object() || !doc.contains("examples") || !doc["examples"].is_array())
    fail(path, ": expected an object with an 'examples' array");
  std::map<std::string, std::string> types;
  for (size_t i = 0; i < doc["examples"].size(); ++i) {
    const auto& e = doc["examples"][i];
    const std::string where = cat(path, ": examples[", i, "]");
    if (!e.is_object()) fail(where, ": not an object");
    types[json_string(e, "keyword", where)] = json_string(e, "type", where);
  }
  return types;
}

// Without Obj_Prompt.json a file is single-choice when every item has one answer of one letter
// (multi_choice files have "AB"; multi_question_choice files a letter per sub-question).
bool every_answer_one_letter(const nlohmann::json& examples) {
  return std::all_of(examples.begin(), examples.end(), [](const nlohmann::json& e) {
    if (!e.is_object() || !e.contains("answer") || !e["answer"].is_array() || e["answer"].size() != 1) return false;
    const auto& a = e["answer"][0];
    return a.is_string() && a.get<std::string>().size() == 1 && a.get<std::string>()[0] >= 'A' &&
           a.get<std::string>()[0] <= 'Z';
  });
}

}  // namespace

bool split_gaokao_options(const std::string& text, std::string& stem, std::array<std::string, 4>& choices) {
  size_t before = text.size();
  std::array<std::pair<size_t, size_t>, 4> marks;
  for (int c = 3; c >= 0; --c) {
    marks[c] = find_marker(text, static_cast<char>('A' + c), before);
    if (marks[c].first == std::string::npos) return false;
    before = marks[c].first;
  }
  stem = trim(std::string_view(text).substr(0, marks[0].first));
  for (int c = 0; c < 4; ++c) {
    size_t begin = marks[c].first + marks[c].second;
    size_t end = c < 3 ? marks[c + 1].first : text.size();
    choices[c] = trim(std::string_view(text).substr(begin, end - begin));
    if (choices[c].empty()) return false;
  }
  return !stem.empty();
}

std::vector<Subject> read_gaokao(const std::string& dir, const std::vector<std::string>& subjects) {
  const std::string qdir = dir + "/Objective_Questions";
  const std::string obj_prompt = dir + "/" + std::string(kGaokaoObjPrompt);
  const bool typed = file_exists(obj_prompt);
  const std::vector<std::string> files = list_files(qdir, ".json");
  std::vector<std::string> present;
  if (typed) {
    const std::map<std::string, std::string> types = read_gaokao_types(obj_prompt);
    for (const auto& stem : files)
      if (auto it = types.find(stem); it != types.end() && it->second == "single_choice") present.push_back(stem);
    for (const auto& w : subjects)  // a present file of another type: say why instead of "no subject"
      if (std::find(files.begin(), files.end(), w) != files.end() &&
          std::find(present.begin(), present.end(), w) == present.end()) {
        auto it = types.find(w);
        if (it == types.end()) fail(obj_prompt, ": does not list '", w, "'; only files it types single_choice are scored");
        fail(obj_prompt, ": types '", w, "' as ", it->second, "; only single_choice files are scored");
      }
  } else {
    for (const auto& stem : files)
      if (stem.ends_with("_MCQs")) present.push_back(stem);
  }
  std::vector<Subject> out;
  for (const auto& name : select_subjects(present, subjects, qdir)) {
    const std::string path = qdir + "/" + name + ".json";
    const nlohmann::json doc = read_json_file(path);
    if (!doc.is_object() || !doc.contains("example") || !doc["example"].is_array())
      fail(path, ": expected an object with an 'example' array");
    if (!typed && !every_answer_one_letter(doc["example"])) {
      if (!subjects.empty())
        fail(path, ": not every answer is one letter, so it is no single-choice file (and there is no ",
             kGaokaoObjPrompt, " to type it)");
      continue;  // multi_choice / multi_question_choice
    }
    Subject s;
    s.name = name;
    s.display_name = gaokao_display_name(s.name);
    std::vector<Question> usable;
    for (size_t i = 0; i < doc["example"].size(); ++i) {
      const auto& e = doc["example"][i];
      std::string where = cat(path, ": example[", i, "]");
      if (!e.is_object()) fail(where, ": not an object");
      std::string text = json_string(e, "question", where);
      auto ans = e.find("answer");
      if (ans == e.end() || !ans->is_array()) fail(where, ": field 'answer' missing or not a list");
      Question q;
      q.id = e.contains("index") ? e["index"].dump() : std::to_string(i);
      // Multi-question items (several answers) and multi-letter answers are not single-choice.
      bool single = ans->size() == 1 && (*ans)[0].is_string() && (*ans)[0].get<std::string>().size() == 1 &&
                    (*ans)[0].get<std::string>()[0] >= 'A' && (*ans)[0].get<std::string>()[0] <= 'D';
      if (!single || !split_gaokao_options(text, q.question, q.choices)) {
        ++s.skipped;
        continue;
      }
      q.answer = (*ans)[0].get<std::string>()[0];
      usable.push_back(std::move(q));
    }
    split_shots(std::move(usable), s);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Subject> read_agieval(const std::string& dir, const std::vector<std::string>& subjects) {
  const std::string vdir = dir + "/v1";
  std::vector<Subject> out;
  for (const auto& name : select_subjects(list_files(vdir, ".jsonl"), subjects, vdir)) {
    const std::string path = vdir + "/" + name + ".jsonl";
    const std::string text = read_text_file(path);
    Subject s;
    s.name = name;
    s.display_name = agieval_display_name(name);
    std::vector<Question> usable;
    size_t line = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string_view row(text.data() + pos, nl - pos);
      pos = nl + 1;
      ++line;
      if (trim(row).empty()) continue;
      std::string where = cat(path, ":", line);
      const nlohmann::json e = parse_json(row, where);
      if (!e.is_object()) fail(where, ": not a JSON object");
      std::string question = json_string(e, "question", where);
      const auto& options = e.contains("options") ? e["options"] : nlohmann::json();
      const auto& label = e.contains("label") ? e["label"] : nlohmann::json();
      if (!options.is_array() || options.size() != 4 || !label.is_string()) {
        ++s.skipped;  // open questions, 5-option tasks, multi-label items
        continue;
      }
      Question q;
      q.id = std::to_string(line - 1);
      // OpenCompass: passage + question, no separator (a null or empty passage adds nothing).
      q.question = question;
      if (auto p = e.find("passage"); p != e.end() && p->is_string()) q.question = p->get<std::string>() + question;
      for (size_t c = 0; c < 4; ++c) {
        if (!options[c].is_string()) fail(where, ": options[", c, "] is not a string");
        q.choices[c] = strip_option_label(options[c].get<std::string>());
      }
      q.answer = parse_answer_letter(label.get<std::string>(), where + ": label");
      usable.push_back(std::move(q));
    }
    split_shots(std::move(usable), s);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace baichuan::eval
