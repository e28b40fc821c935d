// The rules every front end (the CLI, the server, the Python binding) applies to what a user leaves
// unset or asks for by name, written once so that the three agree.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>

#include "generate/sampling.h"
#include "model/config.h"

namespace baichuan {

// The context (KV cache size in tokens) of a run that sets none: model_max_length, at least 4096.
inline int64_t default_context(const ModelConfig& config) {
  return std::max<int64_t>(config.model_max_length, 4096);
}

// Greedy decoding as --greedy, do_sample=False and temperature 0 ask for it: the plain arg-max, so no
// repetition penalty unless the caller sets one afterwards.
inline void use_greedy(SamplingParams& params) {
  params.greedy = true;
  params.repetition_penalty = 1.0f;
}

// The seed of a run that sets none, from the system's entropy.
inline uint64_t random_seed() { return std::random_device{}(); }

}  // namespace baichuan
