// AVX-512F path of grad_kernels.h; compiled with those flags, called only after a CPU check.
#include "kernels/avx512_intrinsics.h"
#include "train/grad_blocking.h"
#include "train/grad_kernels.h"

namespace baichuan::train::avx512 {

namespace {

// 8 rows x 32 columns: 16 zmm accumulators, 2 loads of b and 8 broadcasts of a per 16 FMAs (the
// AVX2 tile needs 6 loads per 8 half-width FMAs). On Zen 4, which runs a 512-bit FMA as two 256-bit
// halves, the gain is the loads and broadcasts saved per FMA and the accumulators that hide the
// FMA latency, not wider arithmetic.
struct GradTileAvx512 {
  static constexpr int64_t kRows = 8, kCols = 32;
  static void run(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t kc) {
    __m512 acc[kRows][2];
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < 2; ++v) acc[r][v] = _mm512_loadu_ps(y + r * y_stride + 16 * v);
    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_loadu_ps(b + k * kCols), b1 = _mm512_loadu_ps(b + k * kCols + 16);
      for (int r = 0; r < kRows; ++r) {
        const __m512 ar = _mm512_set1_ps(a[r * a_row + k * a_col]);
        acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < 2; ++v) _mm512_storeu_ps(y + r * y_stride + 16 * v, acc[r][v]);
  }
};

}  // namespace

void accumulate_products(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                         int64_t cols) {
  blocked_accumulate<GradTileAvx512>(y, y_stride, a, b, rows, K, cols);
}

}  // namespace baichuan::train::avx512
