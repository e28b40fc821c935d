#include "train/grad_kernels.h"

#include "kernels/cpu.h"

namespace baichuan::train {

namespace scalar {

void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const float ak = a[r * a_row + k * a_col];
      for (int64_t c = 0; c < cols; ++c) y[r * y_stride + c] += ak * b[k * b_stride + c];
    }
}

}  // namespace scalar

void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols) {
  if (kernels::avx2_kernels())
    avx2::accumulate_products(y, y_stride, a, a_row, a_col, rows, b, b_stride, K, cols);
  else
    scalar::accumulate_products(y, y_stride, a, a_row, a_col, rows, b, b_stride, K, cols);
}

}  // namespace baichuan::train
