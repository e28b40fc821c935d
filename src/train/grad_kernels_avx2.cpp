// AVX2+FMA version of grad_kernels.h; compiled with those flags, called only after a CPU check.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "train/grad_kernels.h"

namespace baichuan::train::avx2 {

namespace {

// NR rows x NV vectors of 8 columns, kept in registers over all of K.
template <int NR, int NV>
void tile(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_stride,
          int64_t K) {
  __m256 acc[NR][NV];
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_loadu_ps(y + r * y_stride + 8 * v);
  for (int64_t k = 0; k < K; ++k) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + k * b_stride + 8 * v);
    for (int r = 0; r < NR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r * a_row + k * a_col);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y + r * y_stride + 8 * v, acc[r][v]);
}

template <int NR>
void rows_tile(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, const float* b,
               int64_t b_stride, int64_t K, int64_t cols) {
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) tile<NR, 2>(y + c, y_stride, a, a_row, a_col, b + c, b_stride, K);
  for (; c + 8 <= cols; c += 8) tile<NR, 1>(y + c, y_stride, a, a_row, a_col, b + c, b_stride, K);
  for (; c < cols; ++c)  // the last columns one by one, still one fused multiply-add per term
    for (int r = 0; r < NR; ++r) {
      float sum = y[r * y_stride + c];
      for (int64_t k = 0; k < K; ++k) sum = std::fma(a[r * a_row + k * a_col], b[k * b_stride + c], sum);
      y[r * y_stride + c] = sum;
    }
}

}  // namespace

// K in blocks, so a block of b (kBlockK x cols) serves every row from cache before the next is read;
// each element still sums its terms in order of k (y holds the running sum between blocks).
void accumulate_products(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col, int64_t rows,
                         const float* b, int64_t b_stride, int64_t K, int64_t cols) {
  constexpr int64_t kBlockK = 256;
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, K - k0);
    const float *ak = a + k0 * a_col, *bk = b + k0 * b_stride;
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) rows_tile<4>(y + r * y_stride, y_stride, ak + r * a_row, a_row, a_col, bk, b_stride, nk, cols);
    for (; r < rows; ++r) rows_tile<1>(y + r * y_stride, y_stride, ak + r * a_row, a_row, a_col, bk, b_stride, nk, cols);
  }
}

}  // namespace baichuan::train::avx2
