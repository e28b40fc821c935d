// One generation driven a forward step at a time, so that a caller can run several of them in one
// batched forward pass (the server's scheduler) or just one (Generator, the Python iterator):
//
//   Decoding d(model, sequence, prompt, options);
//   while (!d.done()) { SequenceStep s = d.next_step(); model.forward(context, {&s, 1}, pool); d.accept(cb); }
//
// (for one generation alone, `d.step(context, pool, cb)` is that loop's body).
//
// The prompt is fed first (reusing the KV cache of the longest prefix it shares with what the
// sequence already holds, and in chunks if asked), then one sampled token per step. Text is streamed
// only once it is complete UTF-8 and cannot be the start of a stop string, so a stop string never
// reaches the caller.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/thread_pool.h"
#include "generate/json_constraint.h"
#include "generate/sampling.h"
#include "model/model.h"

namespace baichuan {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  bool ignore_eos = false;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop when the generated text contains one of these
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the model's logits first, in [-100, 100]
  // Set: the output is one JSON object (see json_constraint.h); the generation stops when it closes.
  std::shared_ptr<const JsonTokenTable> json_object;
  // >= 0: GenerateResult::logprobs gets each generated token's log-probability and this many (at
  // most 20) alternatives (the distribution is the one Sampler::next describes, after the logit
  // bias and the JSON constraint), and on_logprobs hears each right before its token's callback
  // (and, with prompt_logprobs, each scored prompt token first, with `prompt` true).
  int top_logprobs = -1;
  std::function<void(const TokenLogprobs&, bool prompt)> on_logprobs;
  // With top_logprobs >= 0: also each prompt token after the first, scored by the model's plain
  // log-softmax (no penalty, no temperature). The whole prompt is then fed (no KV-cache reuse), also
  // with max_new_tokens 0 (scoring a text).
  bool prompt_logprobs = false;
  // Called after each prompt step with the prompt tokens in the cache so far and in all (a long
  // prompt fed in chunks reports its progress; reused cached tokens count as done).
  std::function<void(int64_t done, int64_t total)> on_prompt_progress;
};

// Why a generation ended. The API edges (server JSON, Python dicts, CLI lines) say it as a string,
// finish_reason_name(): "stop", "length", "cancelled", "error".
enum class FinishReason {
  None,       // not finished yet
  Stop,       // EOS, a stop string, a closed JSON object
  Length,     // max_new_tokens or the context
  Cancelled,  // Decoding::cancel(): the caller or a shutting-down server
  Error,      // the server's scheduler could not run the step; the message is in the result's text
};
const char* finish_reason_name(FinishReason reason);
std::ostream& operator<<(std::ostream& out, FinishReason reason);  // the name, for test messages

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (an EOS that ended generation is not included)
  std::string text;             // without the stop string that ended it, if any
  FinishReason finish_reason = FinishReason::None;
  std::vector<TokenLogprobs> logprobs;         // per generated token, with top_logprobs >= 0
  std::vector<TokenLogprobs> prompt_logprobs;  // per prompt token from the second, with prompt_logprobs
  int64_t prompt_tokens = 0, reused_prompt_tokens = 0;
  double prompt_seconds = 0, generate_seconds = 0;
};

// Called with each new token and the text it completed (possibly empty while a UTF-8 character is
// incomplete or the text might be the start of a stop string); at the end with id -1 and whatever
// text was held back. Returning false cancels the generation.
using TokenCallback = std::function<bool(int32_t id, std::string_view text)>;

// A KV cache and the ids whose keys and values it holds: what prefix reuse compares against.
struct CachedSequence {
  explicit CachedSequence(KvCache kv) : cache(std::move(kv)) {}
  // How many leading ids `prompt` shares with `ids`.
  size_t shared_prefix(std::span<const int32_t> prompt) const;

  KvCache cache;
  std::vector<int32_t> ids;
};

// Throws Error for what no generation can start from: an empty prompt, one longer than `context`,
// ids outside the vocabulary, a negative max_new_tokens, invalid sampling parameters.
void check_generation(std::span<const int32_t> prompt, const GenerateOptions& options, int64_t context,
                      int32_t vocab_size);

class Decoding {
 public:
  // Throws what check_generation() throws (the context is the cache's capacity). `prompt_chunk` > 0
  // feeds at most that many prompt tokens per step.
  Decoding(const Model& model, CachedSequence& sequence, std::span<const int32_t> prompt, GenerateOptions options,
           int64_t prompt_chunk = 0);

  bool done() const { return done_; }
  bool in_prompt() const { return fed_ < static_cast<size_t>(result_.prompt_tokens); }
  // The work of the next forward step; its logits land in this object.
  SequenceStep next_step();
  // Consumes the logits of the step just run: samples the next token once the prompt is in, applies
  // the stop rules and calls `on_token` (may be empty).
  void accept(const TokenCallback& on_token);
  // One forward step of this generation alone: next_step(), the model, accept().
  void step(ModelContext& context, ThreadPool& pool, const TokenCallback& on_token);
  // Ends the generation now with FinishReason::Cancelled (no further callbacks).
  void cancel();

  const GenerateResult& result() const { return result_; }

 private:
  void finish(FinishReason reason, bool flush_decoder, const TokenCallback& on_token);
  void score_prompt_rows();  // prompt_logprobs from the rows of a prompt step
  int64_t tokens_left() const;  // the most tokens this generation may still produce, this one included
  // Sends the part of the text that can no longer turn into a stop string.
  bool stream_safe_text(int32_t id, const TokenCallback& on_token);

  const Model& model_;
  CachedSequence& sequence_;
  GenerateOptions options_;
  int64_t prompt_chunk_;
  size_t fed_ = 0;                   // prompt tokens in the cache
  std::vector<int32_t> step_tokens_;  // what the current step feeds
  std::vector<float> logits_;
  std::vector<int32_t> seen_;  // the prompt, then what was generated: the repetition penalty's ids
  Sampler sampler_;
  std::unique_ptr<JsonConstraint> json_;
  StreamDecoder decoder_;
  size_t streamed_ = 0;  // bytes of result_.text already given to the callback
  bool done_ = false;
  GenerateResult result_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace baichuan
