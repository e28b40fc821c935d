// The input of one or more matrix products: float rows, one per token, and, made on first request
// and then shared by every matrix that reads the same input (Q, K and V; gate and up), their 8-bit
// block quantization (or, for the medium matmul precision, their rounding to bfloat16). Buffers are
// kept across reset() calls, so decoding allocates nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace baichuan::kernels {

class MatmulInput {
 public:
  MatmulInput() = default;
  MatmulInput(const float* x, int64_t n_tokens, int64_t cols) { reset(x, n_tokens, cols); }
  // Points at new rows x[t * cols + i]; forgets earlier quantizations.
  void reset(const float* x, int64_t n_tokens, int64_t cols);

  const float* floats() const { return x_; }
  int64_t tokens() const { return n_tokens_; }
  int64_t cols() const { return cols_; }

  // The rows quantized for weights of `weight_type` (see quant_dot.h): token t starts at
  // t * quantized_row_bytes(weight_type). Threads split the tokens.
  const std::byte* quantized(DType weight_type, ThreadPool& pool);
  size_t quantized_row_bytes(DType weight_type) const;
  // The rows rounded to bfloat16 (bf16_dot.h), token t at t * cols(). Threads split the tokens.
  const uint16_t* bfloat16(ThreadPool& pool);

 private:
  const float* x_ = nullptr;
  int64_t n_tokens_ = 0, cols_ = 0;
  struct Quantized {
    std::vector<std::byte> bytes;
    bool ready = false;
  };
  Quantized blocks32_, blocks256_, bfloat16_;
};

}  // namespace baichuan::kernels
