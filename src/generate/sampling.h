// Choosing the next token with Hugging Face semantics and order: repetition penalty over every id so
// far (prompt included), then temperature, top-k, top-p; greedy takes the arg-max after the penalty.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "model/config.h"

namespace baichuan {

struct SamplingParams {
  bool greedy = false;
  float temperature = 1.0f;
  int64_t top_k = 0;  // 0 = off
  float top_p = 1.0f;  // 1 = off
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;

  static SamplingParams from(const GenerationConfig& g);  // the model's defaults
  void validate() const;  // throws Error on a negative temperature, top_p outside (0, 1], ...
};

// OpenAI's logit_bias: `bias` added to the logit of each listed id (ids outside the logits are skipped;
// the caller validates them).
void apply_logit_bias(std::span<float> logits, std::span<const std::pair<int32_t, float>> bias);

struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;
};
struct TokenLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first (ties: lower id first); never a -inf entry
};
// The log-softmax of `logits` (computed in double over the whole vocabulary) at `chosen`, and the
// `top_n` most likely tokens with theirs.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t chosen, size_t top_n);

// HF RepetitionPenaltyLogitsProcessor: each distinct id seen has its logit divided by the penalty if
// positive, multiplied if negative.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> seen, float penalty);

// The distribution sampling draws from after all processors: (id, probability) for every token with
// non-zero probability, highest first.
std::vector<std::pair<int32_t, float>> kept_distribution(std::span<const float> logits, std::span<const int32_t> seen,
                                                          const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(SamplingParams params) : params_(params), rng_(params.seed) {}
  const SamplingParams& params() const { return params_; }
  // `logits` is modified in place. With `logprobs`, also the log-probabilities of the chosen token and
  // the `top_logprobs` most likely ones, in the distribution after the repetition penalty and the
  // temperature but before top-k and top-p truncation (so alternatives the truncation removed still
  // have their probability); under greedy decoding, at temperature 1.
  int32_t next(std::span<float> logits, std::span<const int32_t> seen, size_t top_logprobs = 0,
               TokenLogprobs* logprobs = nullptr);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace baichuan
