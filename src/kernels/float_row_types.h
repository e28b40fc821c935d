// The stored float types a row kernel is written for (F32, F16, BF16), as a compile-time argument:
// the SIMD files (vec_avx2.cpp, vec_avx512.cpp) instantiate each kernel once per type through it.
#pragma once
#include <type_traits>

#include "core/dtype.h"

namespace baichuan::kernels {

// kernel(std::integral_constant<DType, T>{}) for T = dtype when dtype is F32, F16 or BF16;
// other() for any other type.
template <typename Kernel, typename Other>
decltype(auto) on_float_row_type(DType dtype, Kernel kernel, Other other) {
  switch (dtype) {
    case DType::F32: return kernel(std::integral_constant<DType, DType::F32>{});
    case DType::F16: return kernel(std::integral_constant<DType, DType::F16>{});
    case DType::BF16: return kernel(std::integral_constant<DType, DType::BF16>{});
    default: return other();
  }
}

}  // namespace baichuan::kernels

// dot_row, row_to_f32 and axpy_row of a SIMD backend, written once: expanded inside the backend's
// namespace after its typed kernels (dot_row_typed<T>, row_to_f32_typed<T>, axpy_row_typed<T>) and
// its NF4 rows (nf4_dot_row, nf4_row_to_f32); other stored types go to the scalar kernels.
#define BAICHUAN_FLOAT_ROW_ENTRY_POINTS                                                     \
  float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n) {            \
    if (dtype == DType::NF4) return nf4_dot_row(row, x, n);                                 \
    return on_float_row_type(                                                               \
        dtype, [&](auto type) { return dot_row_typed<type.value>(row, x, n); },             \
        [&] { return scalar::dot_row(dtype, row, x, n); });                                 \
  }                                                                                         \
  void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n) {              \
    if (dtype == DType::NF4) return nf4_row_to_f32(row, out, n);                            \
    on_float_row_type(                                                                      \
        dtype, [&](auto type) { row_to_f32_typed<type.value>(row, out, n); },               \
        [&] { scalar::row_to_f32(dtype, row, out, n); });                                   \
  }                                                                                         \
  void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n) {         \
    on_float_row_type(                                                                      \
        dtype, [&](auto type) { axpy_row_typed<type.value>(row, a, y, n); },                \
        [&] { scalar::axpy_row(dtype, row, a, y, n); });                                    \
  }
