// Greedy decoding of n tokens after a prompt, ignoring EOS: what the golden `greedy` fields hold.
#pragma once
#include <cstdint>
#include <vector>

#include "generate/generator.h"

namespace baichuan::testing {

// n greedy tokens, EOS ignored.
inline GenerateOptions greedy_options(int64_t n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.ignore_eos = true;
  o.sampling.greedy = true;
  return o;
}

inline std::vector<int32_t> greedy_tokens(const Model& model, ThreadPool& pool, const std::vector<int32_t>& prompt,
                                          size_t n) {
  Generator gen(model, pool, static_cast<int64_t>(prompt.size() + n));
  return gen.generate(prompt, greedy_options(static_cast<int64_t>(n))).tokens;
}

}  // namespace baichuan::testing
