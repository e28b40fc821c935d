// AVX-512 versions of kernels/vec.h (F/BW/VL/DQ with FMA and F16C); called only after a CPU check.
// 16 floats per register and masked tails; the 32 registers hold the whole 4-row by 6-token tile
// (24 accumulators, 4 weights and a token).
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include <cstring>

#include "kernels/float_row_types.h"
#include "kernels/nf4_dot.h"
#include "kernels/vec.h"

namespace baichuan::kernels::avx512 {

namespace {

float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Lanes [0, count) of a 16-lane register, count <= 16.
__mmask16 first_lanes(int64_t count) { return static_cast<__mmask16>((1u << count) - 1u); }

// Sixteen stored values from element i (only the lanes in `mask` are read; the others are 0).
template <DType T>
__m512 load16(const std::byte* row, int64_t i, __mmask16 mask = 0xFFFF) {
  if constexpr (T == DType::F32) {
    return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == DType::F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * i));
  } else {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
}

template <DType T>
float dot_row_typed(const std::byte* row, const float* x, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(load16<T>(row, i), _mm512_loadu_ps(x + i), acc0);
    acc1 = _mm512_fmadd_ps(load16<T>(row, i + 16), _mm512_loadu_ps(x + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load16<T>(row, i + 32), _mm512_loadu_ps(x + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load16<T>(row, i + 48), _mm512_loadu_ps(x + i + 48), acc3);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = i + 16 <= n ? __mmask16{0xFFFF} : first_lanes(n - i);
    acc0 = _mm512_fmadd_ps(load16<T>(row, i, m), _mm512_maskz_loadu_ps(m, x + i), acc0);
  }
  return hsum(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

template <DType T>
void axpy_row_typed(const std::byte* row, float a, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = i + 16 <= n ? __mmask16{0xFFFF} : first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, load16<T>(row, i, m), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

template <DType T>
void row_to_f32_typed(const std::byte* row, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = i + 16 <= n ? __mmask16{0xFFFF} : first_lanes(n - i);
    _mm512_mask_storeu_ps(out + i, m, load16<T>(row, i, m));
  }
}

template <int NR, int NT>
void tile(const float* w, const float* x, int64_t n, float* out, int64_t out_stride) {
  __m512 acc[NT][NR];
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_setzero_ps();
  // Written out twice, for the full steps and the masked last one: with the mask computed inside
  // the loop, or the step a function taking `acc`, GCC keeps the 24 accumulators in memory.
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_loadu_ps(w + r * n + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * n + i);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  if (i < n) {
    const __mmask16 m = first_lanes(n - i);
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_maskz_loadu_ps(m, w + r * n + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + t * n + i);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) out[t * out_stride + r] = hsum(acc[t][r]);
}

template <int NR>
void tile_tokens(const float* w, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  switch (nt) {
    case 1: return tile<NR, 1>(w, x, n, out, out_stride);
    case 2: return tile<NR, 2>(w, x, n, out, out_stride);
    case 3: return tile<NR, 3>(w, x, n, out, out_stride);
    case 4: return tile<NR, 4>(w, x, n, out, out_stride);
    case 5: return tile<NR, 5>(w, x, n, out, out_stride);
    default: return tile<NR, 6>(w, x, n, out, out_stride);
  }
}

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) {
  return dot_row_typed<DType::F32>(reinterpret_cast<const std::byte*>(a), b, n);
}

BAICHUAN_FLOAT_ROW_ENTRY_POINTS

void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  switch (nr) {
    case 1: return tile_tokens<1>(w, x, nt, n, out, out_stride);
    case 2: return tile_tokens<2>(w, x, nt, n, out, out_stride);
    case 3: return tile_tokens<3>(w, x, nt, n, out, out_stride);
    default: return tile_tokens<4>(w, x, nt, n, out, out_stride);
  }
}

}  // namespace baichuan::kernels::avx512
