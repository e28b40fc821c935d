#include "eval/choice_scorer.h"

#include <algorithm>

#include "core/error.h"
#include "eval/prompts.h"

namespace baichuan::eval {

ChoiceScorer::ChoiceScorer(const Model& model, ThreadPool& pool, int64_t context)
    : model_(model), pool_(pool), sequence_(model.new_cache(context)), choice_ids_(choice_token_ids(model.tokenizer())) {}

Choice ChoiceScorer::score(std::span<const int32_t> prompt) {
  if (prompt.empty()) fail("multiple-choice scoring: the prompt is empty");
  if (static_cast<int64_t>(prompt.size()) > context())
    fail("multiple-choice scoring: the prompt has ", prompt.size(), " tokens; the context is ", context());
  // At least the last token is fed again: its logits are the answer.
  const size_t reused = std::min(sequence_.shared_prefix(prompt), prompt.size() - 1);
  sequence_.cache.truncate(static_cast<int64_t>(reused));
  sequence_.ids.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(reused));
  for (size_t fed = reused; fed < prompt.size();) {
    const size_t n = std::min(prompt.size() - fed, static_cast<size_t>(kChunk));
    SequenceStep step{&sequence_.cache, prompt.subspan(fed, n), false, &logits_};
    model_.forward(context_, {&step, 1}, pool_);
    sequence_.ids.insert(sequence_.ids.end(), prompt.begin() + static_cast<std::ptrdiff_t>(fed),
                         prompt.begin() + static_cast<std::ptrdiff_t>(fed + n));
    fed += n;
  }
  Choice c;
  c.letter = choose_letter(logits_.data(), choice_ids_);
  for (size_t i = 0; i < 4; ++i) c.logits[i] = logits_[static_cast<size_t>(choice_ids_[i])];
  c.prompt_tokens = static_cast<int64_t>(prompt.size());
  c.reused_tokens = static_cast<int64_t>(reused);
  return c;
}

}  // namespace baichuan::eval
