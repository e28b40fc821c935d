// AVX2 products of packed (interleaved by 8) Q4_0 / Q8_0 matrices with ActBlock32 activations.
// A tile is 8 rows x T tokens: each block's weights are loaded and unpacked once for T tokens, and
// each of the 8 lanes of an accumulator is one row, so results are stored without horizontal sums.
// Every (row, token) result goes through the same instructions whatever T and the thread split are,
// so -t 1 and -t 2 give identical numbers.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant_dot.h"

namespace baichuan::kernels::avx2 {

namespace {

constexpr int kTileTokens = 4;        // tokens sharing one unpacking of the weights
constexpr int64_t kTileGroups = 16;   // 128 rows, kept in L2 while every token tile passes over them
constexpr size_t kScaleBytes = 16;    // 8 f16 scales at the head of each packed block

// The same 4 activation bytes in every 32-bit lane (they pair with 4 quants of each of 8 rows).
inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256 load_scales(const std::byte* block) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
}

inline __m256i load32(const std::byte* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Decoding streams each weight once from memory: ask for the lines a few blocks ahead, so the
// loads find them in cache (the hardware prefetcher alone leaves one thread short of bandwidth).
constexpr size_t kPrefetchAhead = 1024;
template <int T>
inline void prefetch_block(const std::byte* block, size_t bytes) {
  if constexpr (T == 1)
    for (size_t line = 0; line < bytes; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(block + kPrefetchAhead + line), _MM_HINT_T0);
}

// Q4_0: x = d * (q - 8) with q unsigned 4-bit, so sum((q - 8) * a) = sum(q * a) - 8 * sum(a): the
// unsigned quants go straight into maddubs, and the offset costs one FMA with s = d_a * sum(a).
// Eight maddubs results add up in int16 without overflow: 8 * 2 * 15 * 127 < 32768.
template <int T>
void q4_0_tile(const std::byte* group, const ActBlock32* act, int64_t nb, float* y, int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 128;
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * kBlock;
    prefetch_block<T>(block, kBlock);
    const __m256 dw = load_scales(block);
    __m256i w[8];
    for (int c = 0; c < 4; ++c) {
      __m256i packed = load32(block + kScaleBytes + 32 * c);
      w[c] = _mm256_and_si256(packed, low);
      w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
    }
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      __m256i sum16 = _mm256_maddubs_epi16(w[0], broadcast4(a.qs));
      for (int k = 1; k < 8; ++k) sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w[k], broadcast4(a.qs + 4 * k)));
      __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16, ones));
      __m256 scaled = _mm256_fmadd_ps(dot, _mm256_set1_ps(a.d), _mm256_set1_ps(-8.0f * a.s));
      acc[t] = _mm256_fmadd_ps(dw, scaled, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

// Q8_0: signed quants, so the sign trick (|w| times a with w's sign) feeds maddubs; pairs can
// reach 2 * 127 * 127, so each maddubs result widens to int32 at once.
template <int T>
void q8_0_tile(const std::byte* group, const ActBlock32* act, int64_t nb, float* y, int64_t y_stride) {
  constexpr size_t kBlock = kScaleBytes + 256;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::byte* block = group + static_cast<size_t>(b) * kBlock;
    prefetch_block<T>(block, kBlock);
    const __m256 dw = load_scales(block);
    for (int t = 0; t < T; ++t) {
      const ActBlock32& a = act[t * nb + b];
      __m256i sum32 = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        __m256i w = load32(block + kScaleBytes + 32 * c);
        __m256i products = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(broadcast4(a.qs + 4 * c), w));
        sum32 = _mm256_add_epi32(sum32, _mm256_madd_epi16(products, ones));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a.d)), _mm256_cvtepi32_ps(sum32), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * y_stride, acc[t]);
}

using TileFn = void (*)(const std::byte*, const ActBlock32*, int64_t, float*, int64_t);

template <int T>
struct Q4Tile {
  static constexpr TileFn fn = q4_0_tile<T>;
};
template <int T>
struct Q8Tile {
  static constexpr TileFn fn = q8_0_tile<T>;
};

// The tile function for n tokens (n <= kTileTokens).
template <template <int> class Tile>
constexpr TileFn tile_for(int n) {
  switch (n) {
    case 1: return Tile<1>::fn;
    case 2: return Tile<2>::fn;
    case 3: return Tile<3>::fn;
    default: return Tile<4>::fn;
  }
}

}  // namespace

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  if (w.dtype != DType::Q4_0 && w.dtype != DType::Q8_0) fail("packed_matmul: unsupported type ", dtype_name(w.dtype));
  const bool q4 = w.dtype == DType::Q4_0;
  const int64_t nb = w.cols / 32;
  const auto* act = reinterpret_cast<const ActBlock32*>(activations);
  static_assert(kTileTokens == 4);
  for (int64_t g0 = group_begin; g0 < group_end; g0 += kTileGroups) {
    const int64_t g1 = std::min(group_end, g0 + kTileGroups);
    for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
      const int n = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
      const TileFn tile = q4 ? tile_for<Q4Tile>(n) : tile_for<Q8Tile>(n);
      for (int64_t g = g0; g < g1; ++g)
        tile(w.data + static_cast<size_t>(g) * w.row_bytes, act + t * nb, nb, y + t * y_stride + g * kPackRows, y_stride);
    }
  }
}

}  // namespace baichuan::kernels::avx2
