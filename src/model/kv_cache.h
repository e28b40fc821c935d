// The keys and values of every layer for the positions a sequence has seen, stored as F16 (the
// default, as llama.cpp), F32 or Q8_0 (blocks of 32 within each head). One cache per sequence, so
// a batch can hold sequences at different positions. Memory is committed as positions are written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "model/config.h"

namespace baichuan {

class KvCache {
 public:
  // Throws Error for a non-positive capacity or a type the model's head size cannot hold.
  KvCache(const ModelConfig& config, int64_t capacity, DType type = DType::F16);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return size_; }  // positions filled
  DType type() const { return type_; }
  void clear() { size_ = 0; }
  // Forgets positions from `n` on (e.g. to reuse a shared prompt prefix).
  void truncate(int64_t n);

  // Stores one position's keys and values (hidden_size floats each), converted to type().
  void store(int64_t layer, int64_t pos, const float* key, const float* value);
  // The stored row of a position; head h starts at head_offset(h).
  const std::byte* key(int64_t layer, int64_t pos) const { return keys_.get() + offset(layer, pos); }
  const std::byte* value(int64_t layer, int64_t pos) const { return values_.get() + offset(layer, pos); }
  size_t head_offset(int64_t head) const { return static_cast<size_t>(head) * head_bytes_; }
  // Bytes from one position's row to the next within a layer: attention reads a head's keys of
  // positions [0, n) at key(layer, 0) + head_offset(h) + j * position_stride().
  size_t position_stride() const { return row_bytes_; }

  // Called by the forward pass after it has written positions [size, size + n).
  void advance(int64_t n) { size_ += n; }

 private:
  size_t offset(int64_t layer, int64_t pos) const {
    return static_cast<size_t>(layer * capacity_ + pos) * row_bytes_;
  }
  DType type_;
  int64_t hidden_, capacity_, size_ = 0;
  size_t row_bytes_ = 0, head_bytes_ = 0;
  std::unique_ptr<std::byte[]> keys_, values_;
};

// Bytes `count` caches of `capacity` positions reserve (keys and values of every layer), as a double
// so a crafted capacity cannot overflow the sum.
double kv_cache_bytes(const ModelConfig& config, int64_t capacity, DType type, int64_t count = 1);
// Throws Error when `count` caches of `capacity` positions could never fit in this machine's memory.
// They commit pages only as positions fill, but a context that cannot fit is refused up front with
// the sizes, not met as an out-of-memory error mid-run.
void check_kv_cache_fits(const ModelConfig& config, int64_t capacity, DType type, int64_t count = 1);

// Parses a KV cache type name: f32 | f16 | q8_0 (case-insensitive).
DType parse_kv_type(const std::string& name);

}  // namespace baichuan
