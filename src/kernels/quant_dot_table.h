// Which kernel family computes the integer dot product of which GGUF block type, written once for
// every backend of quant_dot.h (the scalar reference and AVX2). A backend hands its families to
// dot_kernel_table as a class with
//   template <typename Block> static constexpr auto blocks32;  // 32-element blocks, ActBlock32
//   template <typename Block> static constexpr auto q45_K;     // Q4_K / Q5_K super-blocks, ActBlock256
//   static constexpr auto q6_K;                                // Q6_K super-blocks, ActBlock256
// each a pointer to float(const Row* row, const Act* act, int64_t n_blocks), Row a byte type.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/quant_dot.h"
#include "quant/blocks.h"

namespace baichuan::kernels {

// A typed kernel behind the untyped DotKernel signature.
template <auto Dot>
struct UntypedDot;
template <typename Row, typename Act, float (*Dot)(const Row*, const Act*, int64_t)>
struct UntypedDot<Dot> {
  static float fn(const std::byte* row, const void* act, int64_t nb) {
    return Dot(reinterpret_cast<const Row*>(row), static_cast<const Act*>(act), nb);
  }
};

// Indexed by DType; null for the types activation_kind rejects.
template <typename Kernels>
constexpr std::array<DotKernel, kDTypeCount> dot_kernel_table() {
  using namespace quant;
  std::array<DotKernel, kDTypeCount> k{};
  k[static_cast<size_t>(DType::Q8_0)] = UntypedDot<Kernels::template blocks32<block_q8_0>>::fn;
  k[static_cast<size_t>(DType::Q4_0)] = UntypedDot<Kernels::template blocks32<block_q4_0>>::fn;
  k[static_cast<size_t>(DType::Q4_1)] = UntypedDot<Kernels::template blocks32<block_q4_1>>::fn;
  k[static_cast<size_t>(DType::Q5_0)] = UntypedDot<Kernels::template blocks32<block_q5_0>>::fn;
  k[static_cast<size_t>(DType::Q5_1)] = UntypedDot<Kernels::template blocks32<block_q5_1>>::fn;
  k[static_cast<size_t>(DType::Q4_K)] = UntypedDot<Kernels::template q45_K<block_q4_K>>::fn;
  k[static_cast<size_t>(DType::Q5_K)] = UntypedDot<Kernels::template q45_K<block_q5_K>>::fn;
  k[static_cast<size_t>(DType::Q6_K)] = UntypedDot<Kernels::q6_K>::fn;
  return k;
}

}  // namespace baichuan::kernels
