#include "eval/bbh.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "eval/benchmarks.h"

namespace baichuan::eval {

std::string strip_bbh_header(const std::string& file_text) {
  std::string text = file_text;
  // The official files: canary line, "-----", description, blank line, exemplars.
  if (size_t sep = text.find("\n-----\n"); sep != std::string::npos && sep < text.find("Q:"))
    text = text.substr(sep + 7);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  return text;
}

std::vector<BbhTask> read_bbh(const std::string& dir, const std::vector<std::string>& tasks) {
  std::vector<BbhTask> out;
  for (const auto& name : select_subjects(list_files(dir + "/bbh", ".json"), tasks, dir + "/bbh")) {
    BbhTask task;
    task.name = name;
    const std::string prompt_path = dir + "/cot-prompts/" + name + ".txt";
    task.cot_prompt = strip_bbh_header(read_text_file(prompt_path));
    if (task.cot_prompt.find("Q:") == std::string::npos) fail(prompt_path, ": no \"Q:\" exemplar");
    const std::string path = dir + "/bbh/" + name + ".json";
    const nlohmann::json doc = read_json_file(path);
    if (!doc.is_object() || !doc.contains("examples") || !doc["examples"].is_array())
      fail(path, ": expected an object with an 'examples' array");
    for (size_t i = 0; i < doc["examples"].size(); ++i) {
      const auto& e = doc["examples"][i];
      if (!e.is_object() || !e.contains("input") || !e["input"].is_string() || !e.contains("target") ||
          !e["target"].is_string())
        fail(path, ": examples[", i, "]: needs string fields 'input' and 'target'");
      task.examples.push_back({e["input"].get<std::string>(), e["target"].get<std::string>()});
    }
    out.push_back(std::move(task));
  }
  return out;
}

std::string bbh_prompt(const BbhTask& task, const std::string& input) {
  return std::string(kBbhInstruction) + "\n" + task.cot_prompt + "\n\nQ: " + input + "\nA: Let's think step by step.";
}

std::optional<std::string> extract_bbh_answer(std::string_view output) {
  size_t at = output.find("So the answer is");
  size_t len = 16;
  if (at == std::string_view::npos) {
    for (std::string_view phrase : {"the answer is", "The answer is"}) {
      size_t p = output.find(phrase);
      if (p < at) at = p, len = phrase.size();
    }
  }
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = output.substr(at + len);
  rest = rest.substr(0, rest.find('\n'));
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == ':'; };
  while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  while (!rest.empty() && is_space(rest.back())) rest.remove_suffix(1);
  if (rest.ends_with('.')) rest.remove_suffix(1);
  while (!rest.empty() && is_space(rest.back())) rest.remove_suffix(1);
  for (char q : {'"', '\''})
    if (rest.size() >= 2 && rest.front() == q && rest.back() == q) rest = rest.substr(1, rest.size() - 2);
  return std::string(rest);
}

bool bbh_answer_matches(const std::optional<std::string>& answer, const std::string& target) {
  if (!answer) return false;
  if (*answer == target) return true;
  const bool option = target.size() == 3 && target[0] == '(' && target[2] == ')';
  if (!option) return false;
  return *answer == target.substr(1, 1) || answer->starts_with(target + " ");
}

}  // namespace baichuan::eval
