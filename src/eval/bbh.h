// BIG-Bench Hard: the 3-shot chain-of-thought prompts of the official repository and the answer
// extraction from a generated continuation.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace baichuan::eval {

struct BbhExample {
  std::string input;
  std::string target;  // "(B)", "False", "yes", "abbe adposition ..."
};

struct BbhTask {
  std::string name;
  std::string cot_prompt;  // cot-prompts/<task>.txt without the canary and "-----" lines, trailing space trimmed
  std::vector<BbhExample> examples;
};

// bbh/<task>.json with cot-prompts/<task>.txt; empty `tasks` means all present.
std::vector<BbhTask> read_bbh(const std::string& dir, const std::vector<std::string>& tasks = {});

// The text before the first "Q:" line that is only the canary and the "-----" separator is dropped; the
// task description stays, as in the BBH paper's prompts (and lm-evaluation-harness).
std::string strip_bbh_header(const std::string& file_text);

// As OpenCompass builds it: kBbhInstruction + "\n" + cot_prompt + "\n\nQ: " + input +
// "\nA: Let's think step by step."
inline constexpr std::string_view kBbhInstruction = "Follow the given examples and answer the question.";
std::string bbh_prompt(const BbhTask& task, const std::string& input);

// Generation stops at this string (the model starting a next exemplar), at EOS, or after
// kBbhMaxNewTokens tokens (the default of --max-new-tokens).
inline constexpr std::string_view kBbhStop = "\n\nQ:";
inline constexpr size_t kBbhMaxNewTokens = 512;

// The answer in a continuation: the text after the FIRST "So the answer is" (else the first
// "the answer is", any case of "The"), up to the end of that line, trimmed of spaces, one trailing
// period and surrounding quotes. nullopt when neither phrase occurs. The first occurrence is taken as
// lm-evaluation-harness does ("take_first"); the continuation was already cut at kBbhStop, so a later
// occurrence would belong to text the model invented after its answer.
std::optional<std::string> extract_bbh_answer(std::string_view output);

// Exact match of an extracted answer with the target, except that for an option target "(X)" an
// answer that is the bare letter "X" or starts with "(X)" (e.g. "(B) 12/25/1937") also counts.
bool bbh_answer_matches(const std::optional<std::string>& answer, const std::string& target);

}  // namespace baichuan::eval
