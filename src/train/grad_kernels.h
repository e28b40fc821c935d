// The inner product kernel of the matmul backward: a register tile of rows of y accumulating the
// products of a (rows x K, any strides) and b (K x cols, row-major), k in order, one fused
// multiply-add per term, as the BLAS microkernels behind PyTorch accumulate. The order matters more
// than it seems: the first AdamW step moves a weight by lr * g / (|g| + eps), so for gradients near
// eps the updated weights follow the last bits of g, and a tree-shaped sum (more accurate, but
// rounded differently from torch's) put them 2.7e-5 away from the golden step instead of 3e-6.
#pragma once
#include <cstdint>

namespace baichuan::train {

// y[r * y_stride + c] += sum_k a[r * a_row + k * a_col] * b[k * b_stride + c] for r < rows, c < cols.
void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols);

namespace scalar {
void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols);
}
namespace avx2 {
void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols);
}

}  // namespace baichuan::train
