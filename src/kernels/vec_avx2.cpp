// AVX2+FMA+F16C versions of kernels/vec.h; compiled with those flags, called only after a CPU check.
#include <immintrin.h>

#include "kernels/float_row_types.h"
#include "kernels/nf4_dot.h"
#include "kernels/vec.h"

namespace baichuan::kernels::avx2 {

namespace {

float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

namespace {

// Eight stored values starting at element i, as floats.
template <DType T>
__m256 load8(const std::byte* row, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  } else {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
}

template <DType T>
float dot_row_typed(const std::byte* row, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load8<T>(row, i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load8<T>(row, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load8<T>(row, i + 16), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load8<T>(row, i + 24), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8<T>(row, i), _mm256_loadu_ps(x + i), acc0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  size_t width = T == DType::F32 ? 4 : 2;
  return sum + scalar::dot_row(T, row + static_cast<size_t>(i) * width, x + i, n - i);
}

template <DType T>
void axpy_row_typed(const std::byte* row, float a, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8<T>(row, i), _mm256_loadu_ps(y + i)));
  size_t width = T == DType::F32 ? 4 : 2;
  scalar::axpy_row(T, row + static_cast<size_t>(i) * width, a, y + i, n - i);
}

template <DType T>
void row_to_f32_typed(const std::byte* row, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8<T>(row, i));
  size_t width = T == DType::F32 ? 4 : 2;
  scalar::row_to_f32(T, row + static_cast<size_t>(i) * width, out + i, n - i);
}

template <int NR, int NT>
void tile(const float* w, const float* x, int64_t n, float* out, int64_t out_stride) {
  __m256 acc[NT][NR];
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = _mm256_loadu_ps(w + r * n + i);
    for (int t = 0; t < NT; ++t) {
      __m256 xv = _mm256_loadu_ps(x + t * n + i);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) {
      float sum = hsum(acc[t][r]);
      for (int64_t j = i; j < n; ++j) sum += w[r * n + j] * x[t * n + j];
      out[t * out_stride + r] = sum;
    }
}

// Up to 3 tokens at a time: 12 accumulators and 4 weights fill the 16 registers.
template <int NR>
void tile_tokens(const float* w, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  for (int t = 0; t < nt; t += 3) {
    const float* xt = x + t * n;
    float* ot = out + t * out_stride;
    switch (nt - t) {
      case 1: tile<NR, 1>(w, xt, n, ot, out_stride); break;
      case 2: tile<NR, 2>(w, xt, n, ot, out_stride); break;
      default: tile<NR, 3>(w, xt, n, ot, out_stride); break;
    }
  }
}

}  // namespace

void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  switch (nr) {
    case 1: return tile_tokens<1>(w, x, nt, n, out, out_stride);
    case 2: return tile_tokens<2>(w, x, nt, n, out, out_stride);
    case 3: return tile_tokens<3>(w, x, nt, n, out, out_stride);
    default: return tile_tokens<4>(w, x, nt, n, out, out_stride);
  }
}

BAICHUAN_FLOAT_ROW_ENTRY_POINTS

}  // namespace baichuan::kernels::avx2
