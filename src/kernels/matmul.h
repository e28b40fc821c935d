// Matrix products of weight matrices stored in their file type (or packed, see packed_matrix.h)
// with float activations.
#pragma once
#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/matmul_input.h"

namespace baichuan::kernels {

// How a matrix's bytes are ordered: as in the file (row after row), or regrouped by PackedMatrix
// (groups of 8 rows interleaved block by block; row_bytes is then the bytes of one such group).
enum class Layout { Rows, Interleaved8 };

// A [rows, cols] row-major weight matrix in its stored type (F32/F16/BF16 or a GGUF block type),
// possibly a row slice of a larger tensor (e.g. the Q, K or V part of W_pack).
struct WeightMatrix {
  DType dtype = DType::F32;
  Layout layout = Layout::Rows;
  const std::byte* data = nullptr;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;

  static WeightMatrix from(const Tensor& t);  // a 2-D tensor
  WeightMatrix slice_rows(int64_t begin, int64_t count) const;
  const std::byte* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// One product of a batch: y[t * y_stride + r] = sum_i w[r, i] * x[t * cols + i].
struct MatmulOutput {
  WeightMatrix w;
  float* y;
  int64_t y_stride;
};

// Computes products that share their input in one pass of the pool: the threads split the rows of
// all the matrices together (e.g. Q, K and V; gate and up). GGUF block-quantized weights multiply
// the input quantized to 8-bit blocks (made once per input, see MatmulInput); F32/F16/BF16 and NF4
// weights multiply the floats. Each output element is computed the same way whatever the number of threads.
void matmul(std::span<const MatmulOutput> outputs, MatmulInput& x, ThreadPool& pool);
void matmul(const WeightMatrix& w, MatmulInput& x, float* y, int64_t y_stride, ThreadPool& pool);
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool);

// The plain reference the tests trust: double accumulation, one element at a time.
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace baichuan::kernels
