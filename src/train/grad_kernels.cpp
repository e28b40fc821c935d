#include "train/grad_kernels.h"

#include <cmath>

#include "kernels/cpu.h"

namespace baichuan::train {

namespace scalar {

// The reference the tests trust: std::fma keeps one rounding per term, as the SIMD tiles do.
void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const float ak = a.at(r, k);
      for (int64_t c = 0; c < cols; ++c) y[r * y_stride + c] = std::fma(ak, b.at(k, c), y[r * y_stride + c]);
    }
}

}  // namespace scalar

void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols) {
  switch (kernels::active_backend()) {
    case kernels::Backend::Avx512: return avx512::accumulate_products(y, y_stride, a, b, rows, K, cols);
    case kernels::Backend::Avx2: return avx2::accumulate_products(y, y_stride, a, b, rows, K, cols);
    case kernels::Backend::Scalar: break;
  }
  scalar::accumulate_products(y, y_stride, a, b, rows, K, cols);
}

}  // namespace baichuan::train
