#include "kernels/vec.h"

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cpu.h"
#include "kernels/nf4_dot.h"
#include "quant/dequantize.h"

namespace baichuan::kernels {

namespace scalar {

float dot_f32(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n) {
  if (dtype == DType::NF4) return scalar::nf4_dot_row(row, x, n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += load_float(dtype, row, static_cast<size_t>(i)) * x[i];
  return sum;
}

void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n) {
  if (dtype == DType::NF4) return scalar::nf4_row_to_f32(row, out, n);
  if (is_quantized(dtype)) return quant::dequantize_row(dtype, row, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = load_float(dtype, row, static_cast<size_t>(i));
}

void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * load_float(dtype, row, static_cast<size_t>(i));
}

void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) out[t * out_stride + r] = dot_f32(w + r * n, x + t * n, n);
}

}  // namespace scalar

// The active backend's version of a vec.h kernel (each backend's dot_row and row_to_f32 take NF4 rows
// to its own NF4 kernel: nf4_dot.h).
#define BAICHUAN_VEC_DISPATCH(call)                         \
  switch (active_backend()) {                               \
    case Backend::Avx512: return avx512::call;              \
    case Backend::Avx2: return avx2::call;                  \
    default: return scalar::call;                           \
  }

float dot_f32(const float* a, const float* b, int64_t n) { BAICHUAN_VEC_DISPATCH(dot_f32(a, b, n)) }

float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n) {
  BAICHUAN_VEC_DISPATCH(dot_row(dtype, row, x, n))
}

void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride) {
  BAICHUAN_VEC_DISPATCH(dot_tile(w, nr, x, nt, n, out, out_stride))
}

void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n) {
  BAICHUAN_VEC_DISPATCH(row_to_f32(dtype, row, out, n))
}

void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n) {
  BAICHUAN_VEC_DISPATCH(axpy_row(dtype, row, a, y, n))
}

#undef BAICHUAN_VEC_DISPATCH

}  // namespace baichuan::kernels
