// AVX-512 (F/BW/VL/DQ + VNNI) products of packed (interleaved by 8) Q4_0 / Q8_0 matrices with
// ActBlock32 activations. A tile is 16 rows (two packed groups of 8, one row per 32-bit lane of a
// 512-bit register: group g in the low half, g + 1 in the high half) x T tokens, T up to
// kTileTokens. `vpdpbusd` multiplies 4 unsigned weight bytes by 4 signed activation bytes and adds
// them to an int32 lane in one instruction, so a block's integer dot product is exact and needs no
// int16 stage or madd.
//
// Bits: per (row, token) the integer sum of a block is exact, so it equals the AVX2 kernel's, and
// the float instructions after it are the AVX2 kernel's, in the same order over the blocks. So every
// result is bit-identical to the AVX2 path for any T and any thread split. A thread's range with an
// odd number of groups leaves one group, which the AVX2 kernel computes (same bits by the same argument),
// and so does a single token (decoding is bound by memory, where the 16-row tile lost).
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant_dot.h"

namespace baichuan::kernels::avx512 {

namespace {

constexpr int kTileTokens = 4;       // tokens sharing one unpacking of the weights
constexpr int64_t kTileGroups = 16;  // 128 rows, kept in L2 while every token tile passes over them
constexpr size_t kScaleBytes = 16;   // 8 f16 scales at the head of each packed block

// The same 4 activation bytes in every 32-bit lane.
inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// 32 bytes of group g (rows 0..7) and 32 of group g + 1 (rows 8..15).
inline __m512i load_pair(const std::byte* p0, const std::byte* p1) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// 16 f16 scales (8 per group) as floats.
inline __m512 load_scales_pair(const std::byte* b0, const std::byte* b1) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1));
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

// As the AVX2 kernel: when the tokens fit in one tile (decoding) every weight comes from memory
// once, so ask for the lines a few blocks ahead.
constexpr size_t kPrefetchAhead = 1024;
template <bool Stream>
inline void prefetch_block(const std::byte* block, size_t bytes) {
  if constexpr (Stream)
    for (size_t line = 0; line < bytes; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(block + kPrefetchAhead + line), _MM_HINT_T0);
}

// Q4_0: x = d * (q - 8): the unsigned nibbles go straight into vpdpbusd as its unsigned operand, the
// offset is one FMA with s = d_a * sum(a) (the AVX2 kernel's float steps).
template <int T, bool Stream>
void q4_0_tile(const std::byte* group0, size_t group_stride, const ActBlock32* act, int64_t nb, float* y,
               int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 128;
  const std::byte* group1 = group0 + group_stride;
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* b0 = group0 + static_cast<size_t>(b) * kBlock;
    const std::byte* b1 = group1 + static_cast<size_t>(b) * kBlock;
    prefetch_block<Stream>(b0, kBlock);
    prefetch_block<Stream>(b1, kBlock);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const __m512i packed = load_pair(b0 + kScaleBytes + 32 * c, b1 + kScaleBytes + 32 * c);
      const __m512i lo = _mm512_and_si512(packed, low), hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
      for (int t = 0; t < T; ++t) {
        const int8_t* a = act[t * nb + b].qs + 4 * c;
        isum[t] = _mm512_dpbusd_epi32(isum[t], lo, broadcast4(a));
        isum[t] = _mm512_dpbusd_epi32(isum[t], hi, broadcast4(a + 16));
      }
    }
    const __m512 dw = load_scales_pair(b0, b1);
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      const __m512 dot = _mm512_cvtepi32_ps(isum[t]);
      const __m512 scaled = _mm512_fmadd_ps(dot, _mm512_set1_ps(a.d), _mm512_set1_ps(-8.0f * a.s));
      acc[t] = _mm512_fmadd_ps(dw, scaled, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

// Q8_0: signed weights and activations; vpdpbusd wants one unsigned operand, so |w| is that operand
// and the activation takes w's sign (AVX-512 has no vpsignb: a masked subtraction from zero where
// w < 0; where w = 0 the product is 0 either way). |-128| is 128 as an unsigned byte: exact.
template <int T, bool Stream>
void q8_0_tile(const std::byte* group0, size_t group_stride, const ActBlock32* act, int64_t nb, float* y,
               int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 256;
  const std::byte* group1 = group0 + group_stride;
  const __m512i zero = _mm512_setzero_si512();
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* b0 = group0 + static_cast<size_t>(b) * kBlock;
    const std::byte* b1 = group1 + static_cast<size_t>(b) * kBlock;
    prefetch_block<Stream>(b0, kBlock);
    prefetch_block<Stream>(b1, kBlock);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int c = 0; c < 8; ++c) {
      const __m512i w = load_pair(b0 + kScaleBytes + 32 * c, b1 + kScaleBytes + 32 * c);
      const __m512i magnitude = _mm512_abs_epi8(w);
      const __mmask64 negative = _mm512_movepi8_mask(w);
      for (int t = 0; t < T; ++t) {
        const __m512i a = broadcast4(act[t * nb + b].qs + 4 * c);
        isum[t] = _mm512_dpbusd_epi32(isum[t], magnitude, _mm512_mask_sub_epi8(a, negative, zero, a));
      }
    }
    const __m512 dw = load_scales_pair(b0, b1);
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(isum[t]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

using TileFn = void (*)(const std::byte*, size_t, const ActBlock32*, int64_t, float*, int64_t);

template <template <int, bool> class Tile, bool Stream, int... T>
constexpr TileFn tile_for(int n, std::integer_sequence<int, T...>) {
  constexpr TileFn table[] = {Tile<T + 1, Stream>::fn...};
  return table[n - 1];
}

#define BAICHUAN_TILE(Name, fn_)                 \
  template <int T, bool Stream>                  \
  struct Name {                                  \
    static constexpr TileFn fn = fn_<T, Stream>; \
  };
BAICHUAN_TILE(Q4_0Tile, q4_0_tile)
BAICHUAN_TILE(Q8_0Tile, q8_0_tile)
#undef BAICHUAN_TILE

// Pairs of groups in blocks of kTileGroups, each block visited by every token tile while it sits in
// L2; an odd group left at the end goes to the AVX2 kernel.
template <template <int, bool> class Tile>
void run_tiles(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
               int64_t group_begin, int64_t group_end) {
  static_assert(kTileGroups % 2 == 0);
  // One token streams every weight from memory once: the 16-row tile reads two groups, two streams
  // 8 rows apart, and measured slower than the AVX2 tile's one stream (32768 x 4096 Q4_0: 14.7 vs
  // 17.8 GB/s, bench/RESULTS.md entry 10), so single tokens run the AVX2 tile (the same bits).
  if (n_tokens == 1) return avx2::packed_matmul(w, activations, n_tokens, y, y_stride, group_begin, group_end);
  const int64_t nb = activation_blocks(w.dtype, w.cols);
  const auto* act = reinterpret_cast<const ActBlock32*>(activations);
  const bool stream = n_tokens <= kTileTokens;
  const int64_t paired_end = group_begin + (group_end - group_begin) / 2 * 2;
  constexpr auto tokens = std::make_integer_sequence<int, kTileTokens>{};
  for (int64_t g0 = group_begin; g0 < paired_end; g0 += kTileGroups) {
    const int64_t g1 = std::min(paired_end, g0 + kTileGroups);
    for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
      const int n = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
      const TileFn tile = stream ? tile_for<Tile, true>(n, tokens) : tile_for<Tile, false>(n, tokens);
      for (int64_t g = g0; g < g1; g += 2)
        tile(w.data + static_cast<size_t>(g) * w.row_bytes, w.row_bytes, act + t * nb, nb, y + t * y_stride + g * kPackRows,
             y_stride);
    }
  }
  if (paired_end < group_end) avx2::packed_matmul(w, activations, n_tokens, y, y_stride, paired_end, group_end);
}

}  // namespace

bool has_packed_matmul(DType dtype) { return dtype == DType::Q4_0 || dtype == DType::Q8_0; }

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  switch (w.dtype) {
    case DType::Q4_0: return run_tiles<Q4_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q8_0: return run_tiles<Q8_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    default: fail("avx512 packed_matmul: unsupported type ", dtype_name(w.dtype));
  }
}

}  // namespace baichuan::kernels::avx512
