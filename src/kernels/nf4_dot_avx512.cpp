// AVX-512 versions of kernels/nf4_dot.h (F, with AVX2/FMA/F16C); called only after a CPU check.
// A block's 16 weights fill one 512-bit register, so one `vpermps` looks up 16 codes (it reads the
// low 4 bits of each index lane: the low nibble needs no mask, the high one a shift).
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include <cstring>

#include "kernels/nf4_dot.h"
#include "quant/blocks.h"

namespace baichuan::kernels::avx512 {

namespace {

// float16(kNf4Values[c] * d), widened: one rounding per code, as dequantization does.
inline __m512 nf4_block_table(const std::byte* block) {
  float d;
  std::memcpy(&d, block + offsetof(quant::block_nf4, d), 4);
  const __m512 scaled = _mm512_mul_ps(_mm512_loadu_ps(quant::kNf4Values), _mm512_set1_ps(d));
  return _mm512_cvtph_ps(_mm512_cvtps_ph(scaled, _MM_FROUND_TO_NEAREST_INT));
}

// Code bytes 16h..16h+15 of a block, one per 32-bit lane (low nibbles: elements 16h..; high
// nibbles: elements 32 + 16h..).
inline __m512i nf4_code_bytes(const uint8_t* qs, int h) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16 * h)));
}

}  // namespace

float nf4_dot_row(const std::byte* row, const float* x, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    const __m512 table = nf4_block_table(block);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    const float* xb = x + i * quant::kNf4BlockElems;
    for (int h = 0; h < 2; ++h) {
      const __m512i bytes = nf4_code_bytes(qs, h);
      acc[h] = _mm512_fmadd_ps(_mm512_permutexvar_ps(bytes, table), _mm512_loadu_ps(xb + 16 * h), acc[h]);
      acc[2 + h] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table),
                                   _mm512_loadu_ps(xb + 32 + 16 * h), acc[2 + h]);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

void nf4_row_to_f32(const std::byte* row, float* out, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    const __m512 table = nf4_block_table(block);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    float* y = out + i * quant::kNf4BlockElems;
    for (int h = 0; h < 2; ++h) {
      const __m512i bytes = nf4_code_bytes(qs, h);
      _mm512_storeu_ps(y + 16 * h, _mm512_permutexvar_ps(bytes, table));
      _mm512_storeu_ps(y + 32 + 16 * h, _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table));
    }
  }
}

}  // namespace baichuan::kernels::avx512
