// AVX-512 activation quantization for kernels/quant_dot.h (F/BW/VL/DQ with FMA and F16C); called
// only after a CPU check. The dot products of the AVX-512 backend are the AVX2 ones for single rows
// and the packed tiles (packed_matmul_avx512.cpp) for the rest. 16 floats per register, narrowed
// in order by `vpmovsdb`; the same operations as the scalar reference, so the bytes match it.
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include <cstring>

#include "kernels/quant_dot.h"

namespace baichuan::kernels::avx512 {

namespace {

float abs_max(const float* x, int n) {
  __m512 m = _mm512_setzero_ps();
  // |x| first: max_ps returns its second operand when one is NaN, so a NaN is skipped as in scalar.
  for (int i = 0; i < n; i += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), m);
  return _mm512_reduce_max_ps(m);
}

// round(x / d) to nearest even, clamped to +-127, for 16 floats: stored as int8 and returned as int32.
__m512i quantize16(const float* x, __m512 d, int8_t* qs) {
  const __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x), d), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtsepi32_epi8(q));
  return q;
}

// Quantizes one block of n (32 or 256) elements: returns d, writes qs and calls sum16(j, codes)
// with the 16 codes qs[16j .. 16j+15] as int32 lanes (all zero for an all-zero block).
template <typename Sum16>
float quantize_block(const float* x, int n, int8_t* qs, Sum16 sum16) {
  const float d = abs_max(x, n) / 127.0f;
  const __m512 dv = _mm512_set1_ps(d);
  for (int j = 0; j < n / 16; ++j)
    sum16(j, d == 0.0f ? _mm512_setzero_si512() : quantize16(x + 16 * j, dv, qs + 16 * j));
  if (d == 0.0f) std::memset(qs, 0, static_cast<size_t>(n));
  return d;
}

}  // namespace

void quantize_activations(DType weight_type, const float* x, int64_t n, void* out) {
  const int64_t nb = activation_blocks(weight_type, n);
  if (activation_kind(weight_type) == ActivationKind::Blocks32) {
    auto* blocks = static_cast<ActBlock32*>(out);
    for (int64_t i = 0; i < nb; ++i) {
      ActBlock32& b = blocks[i];
      __m512i sum = _mm512_setzero_si512();  // one reduction per block
      b.d = quantize_block(x + 32 * i, 32, b.qs, [&](int, __m512i q) { sum = _mm512_add_epi32(sum, q); });
      b.sum = _mm512_reduce_add_epi32(sum);
      b.s = b.d * static_cast<float>(b.sum);
    }
  } else {
    auto* blocks = static_cast<ActBlock256*>(out);
    for (int64_t i = 0; i < nb; ++i) {
      ActBlock256& b = blocks[i];
      b.d = quantize_block(x + 256 * i, 256, b.qs, [&](int j, __m512i q) {
        b.bsums[j] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
      });
    }
  }
}

}  // namespace baichuan::kernels::avx512
