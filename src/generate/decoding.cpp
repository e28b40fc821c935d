#include "generate/decoding.h"

#include <algorithm>
#include <ostream>

#include "core/error.h"

namespace baichuan {

namespace {

constexpr int kMaxTopLogprobs = 20;         // OpenAI's limit
constexpr int64_t kScoredPromptChunk = 32;  // prompt rows per step when every row's logits are kept

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The length of the longest suffix of `text` that is a proper prefix of one of `stops`: text that
// must be held back because the next token may complete a stop string.
size_t stop_prefix_suffix(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const auto& s : stops)
    for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), text.size()); k > held; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        held = k;
        break;
      }
  return held;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "";
}

std::ostream& operator<<(std::ostream& out, FinishReason reason) { return out << finish_reason_name(reason); }

void check_generation(std::span<const int32_t> prompt, const GenerateOptions& options, int64_t context,
                      int32_t vocab_size) {
  options.sampling.validate();
  if (prompt.empty()) fail("the prompt is empty: nothing to continue from");
  if (static_cast<int64_t>(prompt.size()) > context)
    fail("the prompt has ", prompt.size(), " tokens, more than the context of ", context,
         " tokens: shorten the prompt or give a larger context");
  if (options.max_new_tokens < 0) fail("max_new_tokens must be >= 0, got ", options.max_new_tokens);
  for (int32_t id : prompt)
    if (id < 0 || id >= vocab_size)
      fail("token id ", id, " in the prompt is outside the vocabulary [0, ", vocab_size, ")");
  for (const auto& [id, bias] : options.logit_bias) {
    if (id < 0 || id >= vocab_size) fail("logit_bias: token id ", id, " is outside the vocabulary [0, ", vocab_size, ")");
    if (!(bias >= -100 && bias <= 100)) fail("logit_bias: the bias of token ", id, " must be in [-100, 100], got ", bias);
  }
  if (options.top_logprobs > kMaxTopLogprobs)
    fail("top_logprobs must be at most ", kMaxTopLogprobs, ", got ", options.top_logprobs);
  if (options.json_object && options.json_object->vocab_size() != vocab_size)
    fail("the JSON constraint's vocabulary has ", options.json_object->vocab_size(), " tokens, the model ", vocab_size);
}

size_t CachedSequence::shared_prefix(std::span<const int32_t> prompt) const {
  size_t n = 0;
  while (n < ids.size() && n < prompt.size() && ids[n] == prompt[n]) ++n;
  return n;
}

Decoding::Decoding(const Model& model, CachedSequence& sequence, std::span<const int32_t> prompt, GenerateOptions options,
                   int64_t prompt_chunk)
    : model_(model),
      sequence_(sequence),
      options_(std::move(options)),
      prompt_chunk_(prompt_chunk),
      seen_(prompt.begin(), prompt.end()),
      sampler_(options_.sampling),
      decoder_(model.tokenizer()),
      start_(std::chrono::steady_clock::now()) {
  check_generation(prompt, options_, sequence.cache.capacity(), model.config().vocab_size);
  result_.prompt_tokens = static_cast<int64_t>(prompt.size());
  // Reuse the longest cached prefix, but always feed at least one token to get fresh logits.
  fed_ = std::min(sequence.shared_prefix(prompt), prompt.size() - 1);
  if (options_.prompt_logprobs && options_.top_logprobs >= 0) {
    fed_ = 0;  // every prompt token must be scored, so none comes from the cache
    if (prompt_chunk_ <= 0 || prompt_chunk_ > kScoredPromptChunk) prompt_chunk_ = kScoredPromptChunk;
  } else {
    options_.prompt_logprobs = false;
  }
  if (options_.json_object) json_ = std::make_unique<JsonConstraint>(options_.json_object);
  sequence.cache.truncate(static_cast<int64_t>(fed_));
  sequence.ids.resize(fed_);
  result_.reused_prompt_tokens = static_cast<int64_t>(fed_);
  if (options_.max_new_tokens == 0 && !options_.prompt_logprobs) {  // scoring the prompt still feeds it
    result_.finish_reason = FinishReason::Length;
    done_ = true;
  }
}

SequenceStep Decoding::next_step() {
  if (done_) fail("internal: next_step() on a finished generation");
  if (in_prompt()) {
    size_t n = static_cast<size_t>(result_.prompt_tokens) - fed_;
    if (prompt_chunk_ > 0) n = std::min(n, static_cast<size_t>(prompt_chunk_));
    step_tokens_.assign(seen_.begin() + static_cast<std::ptrdiff_t>(fed_),
                        seen_.begin() + static_cast<std::ptrdiff_t>(fed_ + n));
  }  // else: step_tokens_ holds the token sampled last
  SequenceStep step;
  step.cache = &sequence_.cache;
  step.tokens = step_tokens_;
  step.logits = &logits_;
  step.all_logits = options_.prompt_logprobs && in_prompt();
  return step;
}

void Decoding::accept(const TokenCallback& on_token) {
  if (done_) return;
  sequence_.ids.insert(sequence_.ids.end(), step_tokens_.begin(), step_tokens_.end());
  if (in_prompt()) {
    if (options_.prompt_logprobs) score_prompt_rows();
    fed_ += step_tokens_.size();
    if (options_.on_prompt_progress) options_.on_prompt_progress(static_cast<int64_t>(fed_), result_.prompt_tokens);
    if (in_prompt()) return;
    result_.prompt_seconds = seconds_since(start_);
    start_ = std::chrono::steady_clock::now();
    if (options_.max_new_tokens == 0) return finish(FinishReason::Length, false, on_token);  // the prompt scored, nothing more
  }

  const auto vocab = static_cast<size_t>(model_.config().vocab_size);
  std::span<float> logits = std::span<float>(logits_).last(vocab);  // the last position's row
  apply_logit_bias(logits, options_.logit_bias);
  if (json_) json_->mask(logits, tokens_left());
  TokenLogprobs logprobs;
  const bool scoring = options_.top_logprobs >= 0;
  const int32_t id =
      sampler_.next(logits, seen_, scoring ? static_cast<size_t>(options_.top_logprobs) : 0, scoring ? &logprobs : nullptr);
  if (id == model_.generation().eos_token_id && !options_.ignore_eos && !json_) return finish(FinishReason::Stop, true, on_token);
  if (json_) json_->accept(id);
  if (scoring) {
    if (options_.on_logprobs) options_.on_logprobs(logprobs, false);
    result_.logprobs.push_back(std::move(logprobs));
  }
  result_.tokens.push_back(id);
  seen_.push_back(id);
  step_tokens_.assign(1, id);
  const size_t before = result_.text.size();
  result_.text += decoder_.push(id);

  // A stop string may start in text already held back: search from there.
  size_t stop_at = std::string::npos;
  for (const auto& s : options_.stop) {
    if (s.empty()) continue;
    size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    stop_at = std::min(stop_at, result_.text.find(s, from));
  }
  if (stop_at != std::string::npos) {
    result_.text.resize(stop_at);
    if (on_token) on_token(id, "");
    return finish(FinishReason::Stop, false, on_token);  // the text ends where the stop string began
  }
  if (!stream_safe_text(id, on_token)) return cancel();
  if (json_ && json_->complete()) return finish(FinishReason::Stop, true, on_token);
  if (static_cast<int64_t>(result_.tokens.size()) >= options_.max_new_tokens ||
      sequence_.cache.size() >= sequence_.cache.capacity())
    finish(FinishReason::Length, true, on_token);
}

void Decoding::score_prompt_rows() {
  const auto vocab = static_cast<size_t>(model_.config().vocab_size);
  for (size_t r = 0; r < step_tokens_.size(); ++r) {
    const size_t next = fed_ + r + 1;  // the prompt token row r predicts
    if (next >= seen_.size()) break;
    const std::span<const float> row = std::span<const float>(logits_).subspan(r * vocab, vocab);
    result_.prompt_logprobs.push_back(token_logprobs(row, seen_[next], static_cast<size_t>(options_.top_logprobs)));
    if (options_.on_logprobs) options_.on_logprobs(result_.prompt_logprobs.back(), true);
  }
}

int64_t Decoding::tokens_left() const {
  const int64_t by_count = options_.max_new_tokens - static_cast<int64_t>(result_.tokens.size());
  const int64_t by_cache = sequence_.cache.capacity() - sequence_.cache.size() + 1;
  return std::min(by_count, by_cache);
}

void Decoding::step(ModelContext& context, ThreadPool& pool, const TokenCallback& on_token) {
  SequenceStep s = next_step();
  model_.forward(context, std::span<SequenceStep>(&s, 1), pool);
  accept(on_token);
}

bool Decoding::stream_safe_text(int32_t id, const TokenCallback& on_token) {
  size_t safe_end = result_.text.size() - stop_prefix_suffix(result_.text, options_.stop);
  std::string_view piece;
  if (safe_end > streamed_) piece = std::string_view(result_.text).substr(streamed_, safe_end - streamed_);
  streamed_ = std::max(streamed_, safe_end);
  return !on_token || on_token(id, piece);
}

void Decoding::finish(FinishReason reason, bool flush_decoder, const TokenCallback& on_token) {
  if (flush_decoder) result_.text += decoder_.flush();  // an incomplete last character, as U+FFFD
  result_.finish_reason = reason;
  result_.generate_seconds = seconds_since(start_);
  done_ = true;
  if (on_token && result_.text.size() > streamed_) on_token(-1, std::string_view(result_.text).substr(streamed_));
  streamed_ = result_.text.size();
}

void Decoding::cancel() {
  if (done_) return;
  result_.finish_reason = FinishReason::Cancelled;
  result_.generate_seconds = seconds_since(start_);
  done_ = true;
}

}  // namespace baichuan
