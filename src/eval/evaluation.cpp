#include "eval/evaluation.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/bbh.h"
#include "eval/benchmarks.h"
#include "eval/choice_scorer.h"
#include "eval/prompts.h"
#include "generate/decoding.h"
#include "tokenizer/tokenizer.h"

namespace baichuan::eval {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Adds each scored item to its subject and the report, and reports progress.
class Tally {
 public:
  Tally(EvalReport& report, int64_t total, const std::function<void(const ItemDone&)>& on_item)
      : report_(report), total_(total), on_item_(on_item) {}

  void add(SubjectScore& score, ItemRecord item) {
    score.correct += item.correct;
    ++score.total;
    correct_ += item.correct;
    report_.prompt_tokens += item.prompt_tokens;
    report_.items.push_back(std::move(item));
    if (on_item_) on_item_({++done_, total_, since(start_), correct_});
  }
  double seconds() const { return since(start_); }

 private:
  EvalReport& report_;
  int64_t total_, done_ = 0, correct_ = 0;
  const std::function<void(const ItemDone&)>& on_item_;
  Clock::time_point start_ = Clock::now();
};

std::vector<Subject> read_subjects(const EvalOptions& o, std::string& split_note) {
  if (o.task == "ceval") return read_ceval(o.data, o.subjects);
  if (o.task == "cmmlu") return read_cmmlu(o.data, o.subjects);
  if (o.task == "gaokao") return read_gaokao(o.data, o.subjects);
  if (o.task == "agieval") return read_agieval(o.data, o.subjects);
  std::string split = o.split;
  if (split.empty()) split = std::filesystem::is_directory(std::filesystem::path(o.data) / "test") ? "test" : "val";
  if (split != "test" && split != "val") fail("--split must be test or val, not '", split, "'");
  split_note = "MMLU split: " + split;
  return read_mmlu(o.data, o.subjects, split);
}

// The item's prompt with as many of the first `shots` shots as fit in `limit` tokens (MMLU's rule,
// which drops shots from the end, applied to every benchmark), tokenized without BOS. When even the
// question alone is too long, its last `limit` tokens are kept (the end, where the answer goes).
struct FittedPrompt {
  std::vector<int32_t> ids;
  std::string text;  // what the model saw: the prompt, or the text of its kept tokens when truncated
  size_t shots = 0;
  bool truncated = false;
};

// The last `limit` of `ids`, and `text` becomes their text.
void keep_last_tokens(std::vector<int32_t>& ids, std::string& text, size_t limit, const Tokenizer& tokenizer) {
  ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(limit));
  text = tokenizer.decode(ids);
}

FittedPrompt fitted_prompt(const std::string& task, const Subject& subject, const Question& item, size_t shots,
                           const Tokenizer& tokenizer, size_t limit) {
  auto build = [&](size_t k) {
    if (task == "mmlu")  // its shot dropping is the loop below (the same rule), so the count of shots is known
      return mmlu_prompt(subject, item, k, [](const std::string&) { return size_t{0}; });
    if (task == "cmmlu") return cmmlu_prompt(subject, item, k);
    return ceval_prompt(subject, item, k);  // C-Eval, and GAOKAO / AGIEval scored C-Eval style
  };
  FittedPrompt p;
  p.shots = std::min(shots, subject.shots.size());
  p.text = build(p.shots);
  p.ids = tokenizer.encode(p.text);
  while (p.ids.size() > limit && p.shots > 0) {
    p.text = build(--p.shots);
    p.ids = tokenizer.encode(p.text);
  }
  p.truncated = p.ids.size() > limit;
  if (p.truncated) keep_last_tokens(p.ids, p.text, limit, tokenizer);
  return p;
}

EvalReport run_multiple_choice(const Model& model, ThreadPool& pool, const EvalOptions& o, EvalReport report,
                               const std::function<void(const ItemDone&)>& on_item) {
  std::string split_note;
  std::vector<Subject> subjects = read_subjects(o, split_note);
  if (!split_note.empty()) report.notes.push_back(split_note);
  const size_t shots = o.shots < 0 ? 5 : static_cast<size_t>(o.shots);
  report.shots = static_cast<int64_t>(shots);
  int64_t total = 0;
  for (auto& s : subjects) {
    if (o.limit > 0 && s.items.size() > static_cast<size_t>(o.limit)) s.items.resize(static_cast<size_t>(o.limit));
    total += static_cast<int64_t>(s.items.size());
  }
  ChoiceScorer scorer(model, pool, o.context);
  report.choice_ids.assign(scorer.choice_ids().begin(), scorer.choice_ids().end());
  // MMLU's own limit is 2048 tokens (Hendrycks' script); the context bounds every benchmark.
  const size_t limit = static_cast<size_t>(o.task == "mmlu" ? std::min<int64_t>(2048, o.context) : o.context);
  Tally tally(report, total, on_item);
  int64_t truncated = 0, fewer_shots = 0;
  for (const Subject& subject : subjects) {
    SubjectScore score{subject.name, subject.display_name, subject.category, 0, 0,
                       static_cast<int64_t>(subject.skipped)};
    for (const Question& q : subject.items) {
      const FittedPrompt prompt = fitted_prompt(o.task, subject, q, shots, model.tokenizer(), limit);
      fewer_shots += prompt.shots < std::min(shots, subject.shots.size());
      truncated += prompt.truncated;
      const Choice c = scorer.score(prompt.ids);
      report.reused_tokens += c.reused_tokens;
      ItemRecord r;
      r.subject = subject.name;
      r.id = q.id;
      r.target = std::string(1, q.answer);
      r.prediction = std::string(1, c.letter);
      r.correct = c.letter == q.answer;
      r.prompt_tokens = static_cast<int64_t>(prompt.ids.size());
      r.shots = static_cast<int64_t>(prompt.shots);
      r.logits = c.logits;
      r.prompt = prompt.text;
      tally.add(score, std::move(r));
    }
    report.subjects.push_back(score);
  }
  report.seconds = tally.seconds();
  if (fewer_shots)
    report.notes.push_back(std::to_string(fewer_shots) + " prompts were longer than " + std::to_string(limit) +
                           " tokens and were given fewer shots");
  if (truncated)
    report.notes.push_back(std::to_string(truncated) + " prompts were too long even without shots; their last " +
                           std::to_string(limit) + " tokens were scored");
  if (o.task == "ceval")
    report.notes.push_back(
        "shots are the first dev items in file order: Baichuan's C-Eval script shuffled them without a seed, so "
        "its exact prompts cannot be reproduced");
  if (o.task == "gaokao" && !file_exists(o.data + "/" + std::string(kGaokaoObjPrompt)))
    report.notes.push_back("no " + std::string(kGaokaoObjPrompt) +
                           " to say which files are single-choice: the *_MCQs files whose every answer is one "
                           "letter are scored");
  if (o.task == "gaokao" || o.task == "agieval")
    report.notes.push_back("the first " + std::to_string(kJsonShots) +
                           " usable items of each file are the shots and are not scored (no official few-shot split)");
  return report;
}

int64_t bbh_new_tokens(const EvalOptions& o) {
  return o.max_new_tokens > 0 ? o.max_new_tokens : static_cast<int64_t>(kBbhMaxNewTokens);
}

EvalReport run_bbh(const Model& model, ThreadPool& pool, const EvalOptions& o, EvalReport report,
                   const std::function<void(const ItemDone&)>& on_item) {
  if (o.shots >= 0 && o.shots != 3)
    fail("bbh: the official chain-of-thought prompts are 3-shot; --shots must be 3 (or left out), not ", o.shots);
  report.shots = 3;
  std::vector<BbhTask> tasks = read_bbh(o.data, o.subjects);
  int64_t total = 0;
  for (auto& t : tasks) {
    if (o.limit > 0 && t.examples.size() > static_cast<size_t>(o.limit)) t.examples.resize(static_cast<size_t>(o.limit));
    total += static_cast<int64_t>(t.examples.size());
  }
  GenerateOptions generate;
  generate.max_new_tokens = bbh_new_tokens(o);
  generate.sampling.greedy = true;
  generate.stop = {std::string(kBbhStop)};
  CachedSequence sequence(model.new_cache(o.context));  // keeps the shared 3-shot prompt across items
  ModelContext context;
  Tally tally(report, total, on_item);
  for (const BbhTask& task : tasks) {
    SubjectScore score{task.name, task.name, "", 0, 0, 0};
    for (size_t k = 0; k < task.examples.size(); ++k) {
      const BbhExample& e = task.examples[k];
      std::string prompt = bbh_prompt(task, e.input);
      std::vector<int32_t> ids = model.tokenizer().encode(prompt);
      // Room for the answer: a prompt that leaves none is cut from the front, as for the other tasks.
      const size_t limit = static_cast<size_t>(std::max<int64_t>(1, o.context - generate.max_new_tokens));
      if (ids.size() > limit) keep_last_tokens(ids, prompt, limit, model.tokenizer());
      Decoding decoding(model, sequence, ids, generate);
      while (!decoding.done()) decoding.step(context, pool, {});
      const auto answer = extract_bbh_answer(decoding.result().text);
      report.reused_tokens += decoding.result().reused_prompt_tokens;
      ItemRecord r;
      r.subject = task.name;
      r.id = std::to_string(k);
      r.target = e.target;
      r.prediction = answer.value_or("");
      r.correct = bbh_answer_matches(answer, e.target);
      r.prompt_tokens = static_cast<int64_t>(ids.size());
      r.shots = 3;
      r.output = decoding.result().text;
      r.prompt = std::move(prompt);
      tally.add(score, std::move(r));
    }
    report.subjects.push_back(score);
  }
  report.seconds = tally.seconds();
  report.notes.push_back("greedy generation until \"\\n\\nQ:\", EOS or " + std::to_string(generate.max_new_tokens) +
                         " tokens; the answer is the text after the first \"So the answer is\"");
  return report;
}

}  // namespace

EvalReport run_eval(const Model& model, ThreadPool& pool, const EvalOptions& options,
                    const std::function<void(const ItemDone&)>& on_item) {
  EvalReport report;
  report.task = parse_task(options.task);
  report.data = options.data;
  if (options.limit < 0) fail("--limit must be >= 0, not ", options.limit);
  if (options.shots < -1) fail("--shots must be >= 0, not ", options.shots);
  if (options.context < 2) fail("--ctx must be at least 2, not ", options.context);
  if (!std::filesystem::is_directory(options.data)) fail(options.data, ": not a directory (--data)");
  if (options.max_new_tokens == 0 || options.max_new_tokens < -1)
    fail("--max-new-tokens must be >= 1, not ", options.max_new_tokens);
  if (!is_multiple_choice(report.task)) {
    const int64_t new_tokens = bbh_new_tokens(options);
    if (options.context <= new_tokens)
      fail("bbh: --ctx ", options.context, " leaves no room for the prompt and ", new_tokens, " new tokens");
    return run_bbh(model, pool, options, std::move(report), on_item);
  }
  // Multiple choice generates nothing: a generation limit there is a mistake to report, not to ignore.
  if (options.max_new_tokens != -1)
    fail("--max-new-tokens is for bbh (generation); ", options.task, " reads one token's logits");
  return run_multiple_choice(model, pool, options, std::move(report), on_item);
}

}  // namespace baichuan::eval
