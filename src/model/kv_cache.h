// The keys and values of every layer for the positions a sequence has seen, in float32.
// One cache per sequence, so a batch can hold sequences at different positions.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace baichuan {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return size_; }  // positions filled
  void clear() { size_ = 0; }
  // Forgets positions from `n` on (e.g. to reuse a shared prompt prefix).
  void truncate(int64_t n);

  float* key(int64_t layer, int64_t pos) { return &keys_[offset(layer, pos)]; }
  float* value(int64_t layer, int64_t pos) { return &values_[offset(layer, pos)]; }
  const float* key(int64_t layer, int64_t pos) const { return &keys_[offset(layer, pos)]; }
  const float* value(int64_t layer, int64_t pos) const { return &values_[offset(layer, pos)]; }

  // Called by the forward pass after it has written positions [size, size + n).
  void advance(int64_t n) { size_ += n; }

 private:
  size_t offset(int64_t layer, int64_t pos) const {
    return static_cast<size_t>((layer * capacity_ + pos) * hidden_);
  }
  int64_t hidden_, capacity_, size_ = 0;
  std::vector<float> keys_, values_;
};

}  // namespace baichuan
