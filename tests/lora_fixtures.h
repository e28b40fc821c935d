// Random LoRA adapters for the merge and adapter-file tests.
#pragma once
#include <cstdint>
#include <vector>

#include "core/splitmix64.h"
#include "model/config.h"
#include "model/lora_adapter.h"

namespace baichuan::lora_fixtures {

// Random A and B in [-0.3, 0.3) on every target of every layer (B not zero, so the adapter changes
// the logits), from `seed`.
inline LoraAdapter random_lora(const ModelConfig& c, int64_t r, double alpha, uint64_t seed) {
  LoraAdapter a;
  a.config.r = r;
  a.config.lora_alpha = alpha;
  uint64_t state = seed;
  auto values = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = static_cast<float>(0.3 * (static_cast<double>(splitmix64(state) >> 11) * 0x1p-53 * 2 - 1));
    return v;
  };
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (LoraTarget t : kLoraTargets)
      a.modules.push_back({l, t, r, alpha, lora_scale(alpha, r, false), values(r * lora_in_features(c, t)),
                           values(lora_out_features(c, t) * r)});
  return a;
}

}  // namespace baichuan::lora_fixtures
