// Multiple-choice scoring as Baichuan's and the benchmarks' scripts do it: one forward pass of the
// prompt, then the answer is the letter whose token has the highest logit at the last position.
// Prompts of one subject share their header and shots, so the KV cache of the prefix a prompt shares
// with the previous one is kept and only the rest is computed.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "generate/decoding.h"
#include "model/model.h"
#include "model/model_context.h"

namespace baichuan::eval {

struct Choice {
  char letter = 'A';
  std::array<float, 4> logits{};  // of the A, B, C, D tokens
  int64_t prompt_tokens = 0, reused_tokens = 0;
};

class ChoiceScorer {
 public:
  // `context`: the longest prompt this scorer takes (its KV cache's capacity).
  ChoiceScorer(const Model& model, ThreadPool& pool, int64_t context);

  int64_t context() const { return sequence_.cache.capacity(); }
  const std::array<int32_t, 4>& choice_ids() const { return choice_ids_; }
  // Throws Error for an empty prompt or one longer than context().
  Choice score(std::span<const int32_t> prompt);

 private:
  static constexpr int64_t kChunk = 512;  // prompt tokens per forward step: bounds the activations

  const Model& model_;
  ThreadPool& pool_;
  ModelContext context_;
  CachedSequence sequence_;
  std::array<int32_t, 4> choice_ids_;
  std::vector<float> logits_;
};

}  // namespace baichuan::eval
