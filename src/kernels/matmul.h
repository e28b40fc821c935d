// Matrix products of a weight matrix stored in its file type with float activations.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace baichuan::kernels {

// A [rows, cols] row-major weight matrix in its stored type (F32/F16/BF16), possibly a row slice of
// a larger tensor (e.g. the Q, K or V part of W_pack).
struct WeightMatrix {
  DType dtype = DType::F32;
  const std::byte* data = nullptr;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;

  static WeightMatrix from(const Tensor& t);  // a 2-D tensor
  WeightMatrix slice_rows(int64_t begin, int64_t count) const;
  const std::byte* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// y[t * y_stride + r] = sum_i w[r, i] * x[t * cols + i], for t < n_tokens, r < rows.
// Threads split the rows of w.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool);

// The plain reference the tests trust: double accumulation, one element at a time.
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace baichuan::kernels
