// The AVX512_BF16 kernel of kernels/bf16_dot.h. The file is built with the avx512 path's flags;
// AVX512_BF16 is enabled for these functions only, which run only after bf16_products() checked it.
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include "kernels/bf16_dot.h"

namespace baichuan::kernels::avx512 {

namespace {

#define BAICHUAN_BF16_TARGET __attribute__((target("avx512bf16")))

template <int NR, int NT>
BAICHUAN_BF16_TARGET void tile(const std::byte* w, size_t w_row_bytes, const uint16_t* x, int64_t n, float* out,
                               int64_t out_stride) {
  __m512 acc[NT][NR];
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_setzero_ps();
  // Each step adds the pairwise products of 32 weights and 32 activations. Written out twice, for
  // the full steps and the masked last one (zero lanes past n), as vec_avx512.cpp's tile and for the
  // same reason: otherwise GCC keeps the accumulators in memory.
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * w_row_bytes + 2 * i);
    for (int t = 0; t < NT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * n + i);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], wv[r], xv);
    }
  }
  if (i < n) {
    const __mmask32 m = static_cast<__mmask32>((uint32_t{1} << (n - i)) - 1u);
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * w_row_bytes + 2 * i);
    for (int t = 0; t < NT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + t * n + i);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], wv[r], xv);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) out[t * out_stride + r] = _mm512_reduce_add_ps(acc[t][r]);
}

template <int NR>
void tile_tokens(const std::byte* w, size_t w_row_bytes, const uint16_t* x, int nt, int64_t n, float* out,
                 int64_t out_stride) {
  switch (nt) {
    case 1: return tile<NR, 1>(w, w_row_bytes, x, n, out, out_stride);
    case 2: return tile<NR, 2>(w, w_row_bytes, x, n, out, out_stride);
    case 3: return tile<NR, 3>(w, w_row_bytes, x, n, out, out_stride);
    case 4: return tile<NR, 4>(w, w_row_bytes, x, n, out, out_stride);
    case 5: return tile<NR, 5>(w, w_row_bytes, x, n, out, out_stride);
    default: return tile<NR, 6>(w, w_row_bytes, x, n, out, out_stride);
  }
}

#undef BAICHUAN_BF16_TARGET

}  // namespace

void bf16_tile(const std::byte* w, size_t w_row_bytes, int nr, const uint16_t* x, int nt, int64_t n, float* out,
               int64_t out_stride) {
  switch (nr) {
    case 1: return tile_tokens<1>(w, w_row_bytes, x, nt, n, out, out_stride);
    case 2: return tile_tokens<2>(w, w_row_bytes, x, nt, n, out, out_stride);
    case 3: return tile_tokens<3>(w, w_row_bytes, x, nt, n, out, out_stride);
    default: return tile_tokens<4>(w, w_row_bytes, x, nt, n, out, out_stride);
  }
}

}  // namespace baichuan::kernels::avx512
