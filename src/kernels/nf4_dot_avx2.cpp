// AVX2+FMA+F16C versions of kernels/nf4_dot.h; compiled with those flags, called only after a CPU check.
// A block's 16 weights sit in two 8-float registers (codes 0..7 and 8..15): a code picks its lane in
// both with `vpermps` (which reads the low 3 bits) and bit 3 chooses between them (`vblendvps` reads
// the sign bit, where a shift puts bit 3).
#include <immintrin.h>

#include <cstring>

#include "kernels/nf4_dot.h"
#include "quant/blocks.h"

namespace baichuan::kernels::avx2 {

namespace {

struct Nf4Table {
  __m256 codes_0_7, codes_8_15;
};

// float16(kNf4Values[c] * d), widened: one rounding per code, as dequantization does.
inline Nf4Table nf4_block_table(const std::byte* block) {
  float d;
  std::memcpy(&d, block + offsetof(quant::block_nf4, d), 4);
  const __m256 dv = _mm256_set1_ps(d);
  auto to_f16_and_back = [](__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); };
  return {to_f16_and_back(_mm256_mul_ps(_mm256_loadu_ps(quant::kNf4Values), dv)),
          to_f16_and_back(_mm256_mul_ps(_mm256_loadu_ps(quant::kNf4Values + 8), dv))};
}

// The weights of 8 codes: bits 2..0 of each lane of `code`, bit 3 in the sign bit of `bit3`.
inline __m256 nf4_lookup(const Nf4Table& t, __m256i code, __m256i bit3) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.codes_0_7, code), _mm256_permutevar8x32_ps(t.codes_8_15, code),
                          _mm256_castsi256_ps(bit3));
}

// Code bytes 8g..8g+7 of a block, one per 32-bit lane: their low nibbles are elements 8g.., their
// high nibbles elements 32 + 8g...
inline __m256i nf4_code_bytes(const uint8_t* qs, int g) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * g)));
}

inline __m256 nf4_low_weights(const Nf4Table& t, __m256i bytes) { return nf4_lookup(t, bytes, _mm256_slli_epi32(bytes, 28)); }
inline __m256 nf4_high_weights(const Nf4Table& t, __m256i bytes) {
  return nf4_lookup(t, _mm256_srli_epi32(bytes, 4), _mm256_slli_epi32(bytes, 24));
}

inline float nf4_hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

}  // namespace

float nf4_dot_row(const std::byte* row, const float* x, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    const Nf4Table t = nf4_block_table(block);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    const float* xb = x + i * quant::kNf4BlockElems;
    for (int g = 0; g < 4; ++g) {
      const __m256i bytes = nf4_code_bytes(qs, g);
      acc[g % 2] = _mm256_fmadd_ps(nf4_low_weights(t, bytes), _mm256_loadu_ps(xb + 8 * g), acc[g % 2]);
      acc[2 + g % 2] = _mm256_fmadd_ps(nf4_high_weights(t, bytes), _mm256_loadu_ps(xb + 32 + 8 * g), acc[2 + g % 2]);
    }
  }
  return nf4_hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

void nf4_row_to_f32(const std::byte* row, float* out, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    const Nf4Table t = nf4_block_table(block);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    float* y = out + i * quant::kNf4BlockElems;
    for (int g = 0; g < 4; ++g) {
      const __m256i bytes = nf4_code_bytes(qs, g);
      _mm256_storeu_ps(y + 8 * g, nf4_low_weights(t, bytes));
      _mm256_storeu_ps(y + 32 + 8 * g, nf4_high_weights(t, bytes));
    }
  }
}

}  // namespace baichuan::kernels::avx2
