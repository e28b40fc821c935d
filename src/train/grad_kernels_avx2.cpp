// AVX2+FMA path of grad_kernels.h; compiled with those flags, called only after a CPU check.
#include <immintrin.h>

#include "train/grad_blocking.h"
#include "train/grad_kernels.h"

namespace baichuan::train::avx2 {

namespace {

// 4 rows x 16 columns: 8 ymm accumulators, 2 loads of b and 4 broadcasts of a per 8 FMAs.
struct GradTileAvx2 {
  static constexpr int64_t kRows = 4, kCols = 16;
  static void run(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t kc) {
    __m256 acc[kRows][2];
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < 2; ++v) acc[r][v] = _mm256_loadu_ps(y + r * y_stride + 8 * v);
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_loadu_ps(b + k * kCols), b1 = _mm256_loadu_ps(b + k * kCols + 8);
      for (int r = 0; r < kRows; ++r) {
        const __m256 ar = _mm256_broadcast_ss(a + r * a_row + k * a_col);
        acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < 2; ++v) _mm256_storeu_ps(y + r * y_stride + 8 * v, acc[r][v]);
  }
};

}  // namespace

void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols) {
  blocked_accumulate<GradTileAvx2>(y, y_stride, a, b, rows, K, cols);
}

}  // namespace baichuan::train::avx2
