// AVX-512 (F/BW/VL/DQ + VNNI) products of packed (interleaved by 8) Q4_0 / Q8_0 matrices with
// ActBlock32 activations, and Q4_K / Q6_K with ActBlock256. A tile is 16 rows (two packed groups of 8, one row per 32-bit lane of a
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
#include "kernels/packed_tiles.h"
#include "kernels/quant_dot.h"

namespace baichuan::kernels::avx512 {

namespace {

using packed_tiles::kScaleBytes, packed_tiles::kTileGroups, packed_tiles::kTileTokens, packed_tiles::prefetch_block;

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

// Q8_0: signed weights and activations; vpdpbusd wants one unsigned operand, so the weights go in as
// w + 128 (one xor per chunk, shared by every token) and each (row, token) block subtracts
// 128 * sum(a), the activations' exact integer sum: the same int32 total as sum(w * a), at most
// 32 * 255 * 127 before the subtraction. (The sign trick of the AVX2 tile needs a masked
// subtraction per token per chunk here, AVX-512 having no vpsignb: prompts ran at ~70% of Q4_0's.)
template <int T, bool Stream>
void q8_0_tile(const std::byte* group0, size_t group_stride, const ActBlock32* act, int64_t nb, float* y,
               int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 256;
  const std::byte* group1 = group0 + group_stride;
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* b0 = group0 + static_cast<size_t>(b) * kBlock;
    const std::byte* b1 = group1 + static_cast<size_t>(b) * kBlock;
    prefetch_block<Stream>(b0, kBlock);
    prefetch_block<Stream>(b1, kBlock);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_set1_epi32(-128 * act[t * nb + b].sum);
    for (int c = 0; c < 8; ++c) {
      const __m512i biased = _mm512_xor_si512(load_pair(b0 + kScaleBytes + 32 * c, b1 + kScaleBytes + 32 * c), bias);
      for (int t = 0; t < T; ++t) isum[t] = _mm512_dpbusd_epi32(isum[t], biased, broadcast4(act[t * nb + b].qs + 4 * c));
    }
    const __m512 dw = load_scales_pair(b0, b1);
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(isum[t]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

// ---- K-quant super-blocks (256 columns), ActBlock256 activations ------------------------------
// vpdpbusd gives each sub-block's exact integer sum per row; it is then scaled by the sub-block's
// integer scale (vpmulld) and added up, which gives the same int32 totals the AVX2 kernel's int16
// stage and madd give (every step exact, no overflow: bounds below), so again the float steps after
// them, in the AVX2 order, give the same bits.

// A pair table (packed_matrix.h: byte 16p + 2r + i is the value of sub-block 2p + i of row r) of
// group g and of g + 1, widened to int16: 32-bit lane L holds row L's pair (rows 8..15 from g + 1).
inline __m256i pair_tables(const std::byte* p0, const std::byte* p1) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1);
}
inline __m512i pair_table_u8(const std::byte* p0, const std::byte* p1) {
  return _mm512_cvtepu8_epi16(pair_tables(p0, p1));
}
inline __m512i pair_table_i8(const std::byte* p0, const std::byte* p1) {
  return _mm512_cvtepi8_epi16(pair_tables(p0, p1));
}
// Value i (0 or 1) of each lane's pair as int32 (sign-extended: the pairs of Q4_K are 0..63).
inline __m512i pair_value(__m512i pairs, int i) {
  return i == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16) : _mm512_srai_epi32(pairs, 16);
}

// Q4_K: per row d * sum_j scale_j * sum(q * a) - dmin * sum_j min_j * sum(a) over the 8 sub-blocks
// of 32 (x d_a). A sub-block's sum is at most 32 * 15 * 127 = 60960, times a scale <= 63, 8 of them
// 3.1e7; the mins term 8 * 63 * 4064: int32 holds both.
template <int T, bool Stream>
void q4_K_tile(const std::byte* group0, size_t group_stride, const ActBlock256* act, int64_t nb, float* y,
               int64_t y_stride) {
  using L = PackedQ4K;
  const std::byte* group1 = group0 + group_stride;
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* b0 = group0 + static_cast<size_t>(b) * L::kBytes;
    const std::byte* b1 = group1 + static_cast<size_t>(b) * L::kBytes;
    prefetch_block<Stream>(b0, L::kBytes);
    prefetch_block<Stream>(b1, L::kBytes);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int p = 0; p < 4; ++p) {  // 64 elements: sub-block 2p in the low nibbles, 2p + 1 in the high
      __m512i sub_lo[T], sub_hi[T];
      for (int t = 0; t < T; ++t) sub_lo[t] = sub_hi[t] = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const size_t chunk = L::kQs + 32 * static_cast<size_t>(8 * p + k);
        const __m512i packed = load_pair(b0 + chunk, b1 + chunk);
        const __m512i lo = _mm512_and_si512(packed, low), hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
        for (int t = 0; t < T; ++t) {
          const int8_t* a = act[t * nb + b].qs + 64 * p + 4 * k;
          sub_lo[t] = _mm512_dpbusd_epi32(sub_lo[t], lo, broadcast4(a));
          sub_hi[t] = _mm512_dpbusd_epi32(sub_hi[t], hi, broadcast4(a + 32));
        }
      }
      const __m512i scales = pair_table_u8(b0 + L::kScales + 16 * p, b1 + L::kScales + 16 * p);
      const __m512i scale_lo = pair_value(scales, 0), scale_hi = pair_value(scales, 1);
      for (int t = 0; t < T; ++t)
        isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(sub_lo[t], scale_lo),
                                                             _mm512_mullo_epi32(sub_hi[t], scale_hi)));
    }
    const __m512 d = load_scales_pair(b0 + L::kD, b1 + L::kD), dmin = load_scales_pair(b0 + L::kDmin, b1 + L::kDmin);
    __m512i mins[4];
    for (int p = 0; p < 4; ++p) mins[p] = pair_table_u8(b0 + L::kMins + 16 * p, b1 + L::kMins + 16 * p);
    for (int t = 0; t < T; ++t) {
      const ActBlock256& a = act[t * nb + b];
      // Activation sums of sub-blocks 0..7 (adjacent bsums added): pair p is int32 p.
      alignas(16) int32_t pair_sums[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(pair_sums),
                      _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8))));
      __m512i msum = _mm512_madd_epi16(mins[0], _mm512_set1_epi32(pair_sums[0]));
      for (int p = 1; p < 4; ++p) msum = _mm512_add_epi32(msum, _mm512_madd_epi16(mins[p], _mm512_set1_epi32(pair_sums[p])));
      const __m512 da = _mm512_set1_ps(a.d);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum[t]), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(msum), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

// Q6_K top bits of quadrant Q (elements 64Q..64Q+63), bits 2Q, 2Q + 1 of each byte of a high-bit
// chunk, moved to bits 4-5 (as the AVX2 kernel does).
template <int Q>
inline __m512i q6_top_bits(__m512i high, __m512i mask) {
  if constexpr (Q == 0) return _mm512_and_si512(_mm512_slli_epi16(high, 4), mask);
  else if constexpr (Q == 1) return _mm512_and_si512(_mm512_slli_epi16(high, 2), mask);
  else if constexpr (Q == 2) return _mm512_and_si512(high, mask);
  else return _mm512_and_si512(_mm512_srli_epi16(high, 2), mask);
}

// Q6_K sub-block G (16 elements) into isum[t]: the codes 0..63 as the unsigned operand, the sum
// (at most 16 * 63 * 127) times the signed scale. The -32 offset goes through bsums after.
template <int T, int G>
inline void q6_K_sub_block(const std::byte* b0, const std::byte* b1, const ActBlock256* act, int64_t nb, int64_t b,
                           __m512i* isum) {
  using L = PackedQ6K;
  const __m512i low = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
  __m512i sub[T];
  for (int t = 0; t < T; ++t) sub[t] = _mm512_setzero_si512();
  for (int k = 0; k < 4; ++k) {
    const size_t low_chunk = L::kLow + 32 * static_cast<size_t>((4 * G + k) % 32);
    const size_t high_chunk = L::kHigh + 32 * static_cast<size_t>((4 * G + k) % 16);
    const __m512i bits = load_pair(b0 + low_chunk, b1 + low_chunk);
    const __m512i nibble = _mm512_and_si512(G < 8 ? bits : _mm512_srli_epi16(bits, 4), low);
    const __m512i w = _mm512_or_si512(nibble, q6_top_bits<G / 4>(load_pair(b0 + high_chunk, b1 + high_chunk), top));
    for (int t = 0; t < T; ++t) sub[t] = _mm512_dpbusd_epi32(sub[t], w, broadcast4(act[t * nb + b].qs + 16 * G + 4 * k));
  }
  const __m512i scale =
      pair_value(pair_table_i8(b0 + L::kScales + 16 * (G / 2), b1 + L::kScales + 16 * (G / 2)), G % 2);
  for (int t = 0; t < T; ++t) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sub[t], scale));
}

// Q6_K: per row d * sum_g scale_g * (sum(q * a) - 32 * sum(a)) over the 16 sub-blocks of 16 (x d_a);
// bounds as the AVX2 kernel's (2.6e8 and 1.3e8).
template <int T, bool Stream>
void q6_K_tile(const std::byte* group0, size_t group_stride, const ActBlock256* act, int64_t nb, float* y,
               int64_t y_stride) {
  using L = PackedQ6K;
  const std::byte* group1 = group0 + group_stride;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* b0 = group0 + static_cast<size_t>(b) * L::kBytes;
    const std::byte* b1 = group1 + static_cast<size_t>(b) * L::kBytes;
    prefetch_block<Stream>(b0, L::kBytes);
    prefetch_block<Stream>(b1, L::kBytes);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    [&]<int... G>(std::integer_sequence<int, G...>) {
      (q6_K_sub_block<T, G>(b0, b1, act, nb, b, isum), ...);
    }(std::make_integer_sequence<int, 16>{});
    const __m512 d = load_scales_pair(b0 + L::kD, b1 + L::kD);
    for (int t = 0; t < T; ++t) {
      const ActBlock256& a = act[t * nb + b];
      __m512i offset = _mm512_setzero_si512();
      for (int p = 0; p < 8; ++p) {  // bsums 2p, 2p + 1 are one int32
        int32_t sums;
        std::memcpy(&sums, a.bsums + 2 * p, 4);
        offset = _mm512_add_epi32(offset, _mm512_madd_epi16(pair_table_i8(b0 + L::kScales + 16 * p, b1 + L::kScales + 16 * p),
                                                            _mm512_set1_epi32(sums)));
      }
      const __m512i total = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(offset, 5));
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(total), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

template <typename Act>
using TileFn = void (*)(const std::byte*, size_t, const Act*, int64_t, float*, int64_t);

template <template <int, bool> class Tile, bool Stream, int... T>
constexpr auto tile_for(int n, std::integer_sequence<int, T...>) {
  constexpr TileFn<typename Tile<1, Stream>::Act> table[] = {Tile<T + 1, Stream>::fn...};
  return table[n - 1];
}

BAICHUAN_PACKED_TILE(Q4_0Tile, q4_0_tile, ActBlock32)
BAICHUAN_PACKED_TILE(Q8_0Tile, q8_0_tile, ActBlock32)
BAICHUAN_PACKED_TILE(Q4_KTile, q4_K_tile, ActBlock256)
BAICHUAN_PACKED_TILE(Q6_KTile, q6_K_tile, ActBlock256)

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
  const auto* act = reinterpret_cast<const typename Tile<1, false>::Act*>(activations);
  const bool stream = n_tokens <= kTileTokens;
  const int64_t paired_end = group_begin + (group_end - group_begin) / 2 * 2;
  constexpr auto tokens = std::make_integer_sequence<int, kTileTokens>{};
  for (int64_t g0 = group_begin; g0 < paired_end; g0 += kTileGroups) {
    const int64_t g1 = std::min(paired_end, g0 + kTileGroups);
    for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
      const int n = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
      const auto tile = stream ? tile_for<Tile, true>(n, tokens) : tile_for<Tile, false>(n, tokens);
      for (int64_t g = g0; g < g1; g += 2)
        tile(w.data + static_cast<size_t>(g) * w.row_bytes, w.row_bytes, act + t * nb, nb, y + t * y_stride + g * kPackRows,
             y_stride);
    }
  }
  if (paired_end < group_end) avx2::packed_matmul(w, activations, n_tokens, y, y_stride, paired_end, group_end);
}

}  // namespace

bool has_packed_matmul(DType dtype) {
  return dtype == DType::Q4_0 || dtype == DType::Q8_0 || dtype == DType::Q4_K || dtype == DType::Q6_K;
}

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  switch (w.dtype) {
    case DType::Q4_0: return run_tiles<Q4_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q8_0: return run_tiles<Q8_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q4_K: return run_tiles<Q4_KTile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q6_K: return run_tiles<Q6_KTile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    default: fail("avx512 packed_matmul: unsupported type ", dtype_name(w.dtype));
  }
}

}  // namespace baichuan::kernels::avx512
