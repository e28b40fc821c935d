// AVX2 products of packed (interleaved by 8) matrices: Q4_0 / Q8_0 with ActBlock32 activations,
// Q4_K / Q6_K with ActBlock256. A tile is 8 rows x T tokens: each block's weights are loaded and unpacked once for T tokens, and
// each of the 8 lanes of an accumulator is one row, so results are stored without horizontal sums.
// Every (row, token) result goes through the same float instructions whatever T and the thread split
// are, so -t 1 and -t 2 give identical numbers. Only the order of the exact integer adds before them
// depends on T: with T > 1 the weights are unpacked a chunk at a time and used by every token at
// once (few registers live, nothing spilled), a single token takes all of a block's chunks first.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "kernels/packed_matrix.h"
#include "kernels/packed_tiles.h"
#include "kernels/quant_dot.h"

namespace baichuan::kernels::avx2 {

namespace {

using packed_tiles::kScaleBytes, packed_tiles::kTileGroups, packed_tiles::kTileTokens, packed_tiles::prefetch_block;

// The same 4 activation bytes in every 32-bit lane (they pair with 4 quants of each of 8 rows).
inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// 8 f16 (one per row) as floats.
inline __m256 load_scales(const std::byte* block) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
}

// Makes the compiler treat v as computed here: it stops GCC from reassociating chains of integer adds
// across the token loop (which hoists every product first and spills them out of the 16 registers).
// (A single token has no such chain to hoist: T = 1 leaves the compiler free.)
template <int T>
inline void keep(__m256i& v) {
  if constexpr (T > 1) asm("" : "+x"(v));
}

inline __m256i load32(const std::byte* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load16(const std::byte* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// Sum over 4-byte chunks k of maddubs(w[k], activations 4k..4k+3): 8 rows x 4k elements, int16
// pairs per row lane.
template <int K>
inline __m256i maddubs_chunks(const __m256i* w, const int8_t* a) {
  __m256i sum16 = _mm256_maddubs_epi16(w[0], broadcast4(a));
  for (int k = 1; k < K; ++k) sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w[k], broadcast4(a + 4 * k)));
  return sum16;
}

// Q4_0: x = d * (q - 8) with q unsigned 4-bit, so sum((q - 8) * a) = sum(q * a) - 8 * sum(a): the
// unsigned quants go straight into maddubs, and the offset costs one FMA with s = d_a * sum(a).
// Eight maddubs results add up in int16 without overflow: 8 * 2 * 15 * 127 < 32768 (integer sums
// are exact, so their order may differ with T: every T gives the same int16 sum per (row, token)).
// One packed chunk (2 unpacked) at a time for all tokens keeps the live registers within 16.
template <int T, bool Stream>
void q4_0_tile(const std::byte* group, const ActBlock32* act, int64_t nb, float* y, int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 128;
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * kBlock;
    prefetch_block<Stream>(block, kBlock);
    __m256i sum16[T];
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = load32(block + kScaleBytes + 32 * c);
      const __m256i lo = _mm256_and_si256(packed, low), hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
      for (int t = 0; t < T; ++t) {
        const int8_t* a = act[t * nb + b].qs + 4 * c;
        const __m256i pair = _mm256_add_epi16(_mm256_maddubs_epi16(lo, broadcast4(a)), _mm256_maddubs_epi16(hi, broadcast4(a + 16)));
        sum16[t] = c == 0 ? pair : _mm256_add_epi16(sum16[t], pair);
        keep<T>(sum16[t]);
      }
    }
    const __m256 dw = load_scales(block);
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16[t], ones));
      __m256 scaled = _mm256_fmadd_ps(dot, _mm256_set1_ps(a.d), _mm256_set1_ps(-8.0f * a.s));
      acc[t] = _mm256_fmadd_ps(dw, scaled, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

// Q8_0: signed quants, so the sign trick (|w| times a with w's sign) feeds maddubs; pairs can
// reach 2 * 127 * 127, so each maddubs result widens to int32 at once. One chunk at a time for all
// tokens, as in Q4_0: each chunk is loaded and made unsigned once per tile, not once per token.
template <int T, bool Stream>
void q8_0_tile(const std::byte* group, const ActBlock32* act, int64_t nb, float* y, int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 256;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * kBlock;
    prefetch_block<Stream>(block, kBlock);
    __m256i sum32[T];
    for (int c = 0; c < 8; ++c) {
      const __m256i w = load32(block + kScaleBytes + 32 * c), magnitude = _mm256_abs_epi8(w);
      for (int t = 0; t < T; ++t) {
        const __m256i signed_a = _mm256_sign_epi8(broadcast4(act[t * nb + b].qs + 4 * c), w);
        const __m256i pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed_a), ones);
        sum32[t] = c == 0 ? pairs : _mm256_add_epi32(sum32[t], pairs);
        keep<T>(sum32[t]);
      }
    }
    const __m256 dw = load_scales(block);
    for (int t = 0; t < T; ++t)
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(act[t * nb + b].d)), _mm256_cvtepi32_ps(sum32[t]), acc[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

// ---- K-quant super-blocks (256 columns) -----------------------------------------------------
// The integer scales come as pair tables (16 bytes: row r's values for sub-blocks 2p, 2p + 1 at
// 2r, 2r + 1). Widened to int16 they are one madd operand against pairs of activation sums; one
// shuffle spreads sub-block i's value over both int16 halves of its row's lane, so a madd of the
// maddubs sums with it scales and sums them per row.
inline __m256i pair_scales_u8(const std::byte* p) { return _mm256_cvtepu8_epi16(load16(p)); }
inline __m256i pair_scales_i8(const std::byte* p) { return _mm256_cvtepi8_epi16(load16(p)); }

// Shuffle masks taking int16 i (0 or 1) of each 32-bit lane into both of its halves.
inline __m256i pick_of_pair(int i) {
  const int base = 0x01000100 + 0x02020202 * i;
  return _mm256_add_epi32(_mm256_set1_epi32(base),
                          _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C));
}

// Q4_K: row value d * sum_j scale_j * sum(q * a) - dmin * sum_j min_j * sum(a) per super-block (x d_a).
// A sub-block of 32 is 8 maddubs summed in int16: 8 * 2 * 15 * 127 = 30480 < 32768. The scale madd
// gives at most 63 * 2 * 30480 per lane, 8 sub-blocks 3.1e7; the mins madd 4 * 2 * 63 * 4064 (a
// sub-block's activation sum is at most 32 * 127): no int32 overflow.
template <int T, bool Stream>
void q4_K_tile(const std::byte* group, const ActBlock256* act, int64_t nb, float* y, int64_t y_stride) {
  using L = PackedQ4K;
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i pick[2] = {pick_of_pair(0), pick_of_pair(1)};
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * L::kBytes;
    prefetch_block<Stream>(block, L::kBytes);
    __m256i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {  // 64 elements: sub-block 2p in the low nibbles, 2p + 1 in the high
      const __m256i scales = pair_scales_u8(block + L::kScales + 16 * p);
      for (int i = 0; i < 2; ++i) {
        const __m256i scale = _mm256_shuffle_epi8(scales, pick[i]);
        if constexpr (T == 1) {  // all 8 weight chunks unpacked, then one token
          __m256i w[8];
          for (int k = 0; k < 8; ++k) {
            const __m256i packed = load32(block + L::kQs + 32 * (8 * p + k));
            w[k] = _mm256_and_si256(i == 0 ? packed : _mm256_srli_epi16(packed, 4), low);
          }
          const __m256i sum16 = maddubs_chunks<8>(w, act[b].qs + 64 * p + 32 * i);
          isum[0] = _mm256_add_epi32(isum[0], _mm256_madd_epi16(sum16, scale));
        } else {
          // One weight chunk at a time for all tokens: the int16 sums of the T tokens, one weight
          // and one product are live (8 unpacked chunks next to T sums would not fit in 16 registers).
          __m256i sum16[T];
          for (int k = 0; k < 8; ++k) {
            const __m256i packed = load32(block + L::kQs + 32 * (8 * p + k));
            const __m256i w = _mm256_and_si256(i == 0 ? packed : _mm256_srli_epi16(packed, 4), low);
            for (int t = 0; t < T; ++t) {
              const __m256i product = _mm256_maddubs_epi16(w, broadcast4(act[t * nb + b].qs + 64 * p + 32 * i + 4 * k));
              sum16[t] = k == 0 ? product : _mm256_add_epi16(sum16[t], product);
              keep<T>(sum16[t]);
            }
          }
          for (int t = 0; t < T; ++t) {
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(sum16[t], scale));
            keep<T>(isum[t]);
          }
        }
      }
    }
    const __m256 d = load_scales(block + L::kD), dmin = load_scales(block + L::kDmin);
    for (int t = 0; t < T; ++t) {
      const ActBlock256& a = act[t * nb + b];
      // Activation sums of sub-blocks 0..7 (adjacent bsums added), pair p in 32-bit lane p.
      const __m256i sums = _mm256_broadcastsi128_si256(
          _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums)),
                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8))));
      __m256i msum = _mm256_madd_epi16(pair_scales_u8(block + L::kMins), _mm256_shuffle_epi32(sums, 0x00));
      msum = _mm256_add_epi32(msum, _mm256_madd_epi16(pair_scales_u8(block + L::kMins + 16), _mm256_shuffle_epi32(sums, 0x55)));
      msum = _mm256_add_epi32(msum, _mm256_madd_epi16(pair_scales_u8(block + L::kMins + 32), _mm256_shuffle_epi32(sums, 0xAA)));
      msum = _mm256_add_epi32(msum, _mm256_madd_epi16(pair_scales_u8(block + L::kMins + 48), _mm256_shuffle_epi32(sums, 0xFF)));
      const __m256 da = _mm256_set1_ps(a.d);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[t]), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(msum), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

// Q6_K top bits: quadrant Q (elements 64Q..64Q+63) keeps them in bits 2Q, 2Q + 1 of each byte of
// a high-bit chunk; moved to bits 4-5 (16-bit shifts: the masked bits never cross a byte).
template <int Q>
inline __m256i q6_top_bits(__m256i high, __m256i mask) {
  if constexpr (Q == 0) return _mm256_and_si256(_mm256_slli_epi16(high, 4), mask);
  else if constexpr (Q == 1) return _mm256_and_si256(_mm256_slli_epi16(high, 2), mask);
  else if constexpr (Q == 2) return _mm256_and_si256(high, mask);
  else return _mm256_and_si256(_mm256_srli_epi16(high, 2), mask);
}

// Q6_K sub-block G (elements 16G..16G+15) of one super-block into isum[t]: low 4 bits in the low
// (G < 8) or high nibbles of low-bit chunks 4G % 32.., top bits in high-bit chunks 4G % 16.. (a
// compile-time G makes every shift and offset an immediate).
template <int T, int G>
inline void q6_K_sub_block(const std::byte* block, const ActBlock256* act, int64_t nb, int64_t b, __m256i* isum,
                           const __m256i* pick) {
  using L = PackedQ6K;
  const __m256i low = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
  const __m256i scale = _mm256_shuffle_epi8(pair_scales_i8(block + L::kScales + 16 * (G / 2)), pick[G % 2]);
  if constexpr (T == 1) {  // the 4 weight chunks unpacked, then one token
    __m256i w[4];
    for (int k = 0; k < 4; ++k) {
      const __m256i bits = load32(block + L::kLow + 32 * ((4 * G + k) % 32));
      const __m256i nibble = _mm256_and_si256(G < 8 ? bits : _mm256_srli_epi16(bits, 4), low);
      w[k] = _mm256_or_si256(nibble, q6_top_bits<G / 4>(load32(block + L::kHigh + 32 * ((4 * G + k) % 16)), top));
    }
    const int8_t* a = act[b].qs + 16 * G;
    const __m256i first = maddubs_chunks<2>(w, a), second = maddubs_chunks<2>(w + 2, a + 8);
    isum[0] = _mm256_add_epi32(isum[0], _mm256_add_epi32(_mm256_madd_epi16(first, scale), _mm256_madd_epi16(second, scale)));
  } else {
    // Two chunks (8 elements) at a time for all tokens, so few registers are live. The int32 adds
    // are exact, so their order (here per half) does not change the sums.
    for (int half = 0; half < 2; ++half) {
      __m256i w[2];
      for (int j = 0; j < 2; ++j) {
        const int k = 2 * half + j;
        const __m256i bits = load32(block + L::kLow + 32 * ((4 * G + k) % 32));
        const __m256i nibble = _mm256_and_si256(G < 8 ? bits : _mm256_srli_epi16(bits, 4), low);
        w[j] = _mm256_or_si256(nibble, q6_top_bits<G / 4>(load32(block + L::kHigh + 32 * ((4 * G + k) % 16)), top));
      }
      for (int t = 0; t < T; ++t) {
        __m256i scaled = _mm256_madd_epi16(maddubs_chunks<2>(w, act[t * nb + b].qs + 16 * G + 8 * half), scale);
        keep<T>(scaled);
        isum[t] = _mm256_add_epi32(isum[t], scaled);
        keep<T>(isum[t]);
      }
    }
  }
}

// Q6_K: row value d * sum_g scale_g * (sum(q * a) - 32 * sum(a)) over sub-blocks g of 16, with the
// codes q = 0..63 unsigned in maddubs and the offset applied through bsums. A maddubs lane reaches
// 2 * 63 * 127 = 16002, so only two are summed in int16 before the scale madd (|scale| <= 128):
// 16 sub-blocks reach 16 * 16 * 63 * 127 * 128 = 2.6e8 and the offset 32 * 16 * 128 * 2032 = 1.3e8.
template <int T, bool Stream>
void q6_K_tile(const std::byte* group, const ActBlock256* act, int64_t nb, float* y, int64_t y_stride) {
  using L = PackedQ6K;
  const __m256i pick[2] = {pick_of_pair(0), pick_of_pair(1)};
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * L::kBytes;
    prefetch_block<Stream>(block, L::kBytes);
    __m256i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
    [&]<int... G>(std::integer_sequence<int, G...>) {
      (q6_K_sub_block<T, G>(block, act, nb, b, isum, pick), ...);
    }(std::make_integer_sequence<int, 16>{});
    const __m256 d = load_scales(block + L::kD);
    for (int t = 0; t < T; ++t) {
      const ActBlock256& a = act[t * nb + b];
      __m256i offset = _mm256_setzero_si256();
      for (int p = 0; p < 8; ++p) {  // bsums 2p, 2p + 1 are one int32
        int32_t sums;
        std::memcpy(&sums, a.bsums + 2 * p, 4);
        offset = _mm256_add_epi32(offset, _mm256_madd_epi16(pair_scales_i8(block + L::kScales + 16 * p), _mm256_set1_epi32(sums)));
      }
      const __m256i total = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(offset, 5));
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a.d)), _mm256_cvtepi32_ps(total), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

// ---- tiles over a range of groups --------------------------------------------------------------

template <typename Act>
using TileFn = void (*)(const std::byte*, const Act*, int64_t, float*, int64_t);

BAICHUAN_PACKED_TILE(Q4_0Tile, q4_0_tile, ActBlock32)
BAICHUAN_PACKED_TILE(Q8_0Tile, q8_0_tile, ActBlock32)
BAICHUAN_PACKED_TILE(Q4_KTile, q4_K_tile, ActBlock256)
BAICHUAN_PACKED_TILE(Q6_KTile, q6_K_tile, ActBlock256)

// The tile function for n tokens (n <= kTileTokens).
template <template <int, bool> class Tile, bool Stream>
constexpr auto tile_for(int n) {
  switch (n) {
    case 1: return Tile<1, Stream>::fn;
    case 2: return Tile<2, Stream>::fn;
    case 3: return Tile<3, Stream>::fn;
    default: return Tile<4, Stream>::fn;
  }
}

// Blocks of kTileGroups groups, each visited by every token tile while it sits in L2.
template <template <int, bool> class Tile>
void run_tiles(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
               int64_t group_begin, int64_t group_end) {
  const int64_t nb = activation_blocks(w.dtype, w.cols);
  const auto* act = reinterpret_cast<const typename Tile<1, false>::Act*>(activations);
  const bool stream = n_tokens <= kTileTokens;
  static_assert(kTileTokens == 4);
  for (int64_t g0 = group_begin; g0 < group_end; g0 += kTileGroups) {
    const int64_t g1 = std::min(group_end, g0 + kTileGroups);
    for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
      const int n = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
      const auto tile = stream ? tile_for<Tile, true>(n) : tile_for<Tile, false>(n);
      for (int64_t g = g0; g < g1; ++g)
        tile(w.data + static_cast<size_t>(g) * w.row_bytes, act + t * nb, nb, y + t * y_stride + g * kPackRows, y_stride);
    }
  }
}

}  // namespace

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  switch (w.dtype) {
    case DType::Q4_0: return run_tiles<Q4_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q8_0: return run_tiles<Q8_0Tile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q4_K: return run_tiles<Q4_KTile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    case DType::Q6_K: return run_tiles<Q6_KTile>(w, activations, n_tokens, y, y_stride, group_begin, group_end);
    default: fail("packed_matmul: unsupported type ", dtype_name(w.dtype));
  }
}

}  // namespace baichuan::kernels::avx2
