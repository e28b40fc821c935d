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
