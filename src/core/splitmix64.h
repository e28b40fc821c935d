// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator whose sequence is fixed by its seed on
// every platform, unlike std:: distributions. Random init and the training data order both use it.
#pragma once
#include <cstdint>

namespace baichuan {

// Advances `state` and returns the next 64 random bits.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace baichuan
