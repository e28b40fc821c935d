// AVX-512F (16 floats) instance of the blocked attention (kernels/attention_kernel.h): twice the
// query rows per score register and twice the head columns per accumulator of the AVX2 one.
#include "kernels/avx512_intrinsics.h"  // <immintrin.h> without GCC 12's false warning

#include "kernels/attention.h"
#include "kernels/attention_kernel.h"

namespace baichuan::kernels::avx512 {

namespace {

struct Avx512Lanes {
  using reg = __m512;
  static constexpr int64_t kWidth = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static reg keep_at_or_after(reg qpos, reg jpos, reg s) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(qpos, jpos, _CMP_GE_OQ), _mm512_set1_ps(-INFINITY), s);
  }
  static float reduce_add(reg v) { return _mm512_reduce_add_ps(v); }
  // As Avx2Lanes::exp (attention_avx2.cpp), 16 lanes.
  static reg exp(reg x) {
    const __mmask16 kept = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mov_ps(kept, _mm512_mul_ps(p, _mm512_castsi512_ps(bits)));
  }
};

}  // namespace

void attend(const AttentionHead& head, const AttentionScratch& scratch) {
  attention_detail::attend_blocked<Avx512Lanes>(head, scratch);
}

}  // namespace baichuan::kernels::avx512
