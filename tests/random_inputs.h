// Deterministic random kernel inputs for the tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace baichuan::testing {

// n floats drawn from N(mean, scale^2) with a fixed seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace baichuan::testing
