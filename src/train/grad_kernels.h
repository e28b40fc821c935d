// The inner product kernel of the training matmuls: y += a . b over register tiles, every element of
// y summing its terms k in order, one fused multiply-add per term, as the BLAS microkernels behind
// PyTorch accumulate. The order matters more than it seems: the first AdamW step moves a weight by
// lr * g / (|g| + eps), so for gradients near eps the updated weights follow the last bits of g, and
// a tree-shaped sum (more accurate, but rounded differently from torch's) put them 2.7e-5 away from
// the golden step instead of 3e-6. Because each element is one chain, the scalar, AVX2 and AVX-512
// paths, any blocking and any split over threads give bit-identical results.
#pragma once
#include <cstdint>

namespace baichuan::train {

// A float matrix read through strides: element (i, j) at data[i * row + j * col].
struct StridedMatrix {
  const float* data;
  int64_t row, col;
  float at(int64_t i, int64_t j) const { return data[i * row + j * col]; }
};

// y[r * y_stride + c] += sum_k a(r, k) * b(k, c) for r < rows, c < cols, k < K in order.
void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols);

// The same with b row-major (b(k, c) at b[k * b_stride + c]).
inline void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                                const float* b, int64_t b_stride, int64_t K, int64_t cols) {
  accumulate_products(y, y_stride, StridedMatrix{a, a_row, a_col}, StridedMatrix{b, b_stride, 1}, rows, K, cols);
}

// The paths, for the tests (the dispatcher above picks one from kernels::active_backend()).
namespace scalar {
void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols);
}
namespace avx2 {
void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols);
}
namespace avx512 {
void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols);
}

}  // namespace baichuan::train
