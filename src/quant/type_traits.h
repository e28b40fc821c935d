// One table of traits per element type, as ggml's type_traits: the layout (from core/dtype.h), how
// a row converts to and from float, and what the integer dot products of kernels/ need. Code that
// must know something about a type asks here instead of switching over DType.
//
// The dot kernels themselves live in kernels/ (which sits above quant/): kernels/quant_dot.cpp keeps
// the matching per-type table of kernel functions, as ggml keeps its CPU kernels in type_traits_cpu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/dtype.h"

namespace baichuan::quant {

// The 8-bit activation blocks an integer dot product with weights of a type takes
// (kernels/quant_dot.h): none (float types, and NF4, multiply floats), 32-element or 256-element blocks.
enum class DotActivations : uint8_t { None, Blocks32, Blocks256 };

struct TypeTraits {
  std::string_view name;
  size_t block_elems = 1, block_bytes = 1;
  // n_blocks blocks (elements, for the float types) at src (any alignment) to floats; nullptr: none.
  void (*to_float)(const std::byte* src, float* dst, int64_t n_blocks) = nullptr;
  // The reverse (quantization for the block types); nullptr: none.
  void (*from_float)(const float* src, std::byte* dst, int64_t n_blocks) = nullptr;
  DotActivations dot = DotActivations::None;
  bool packable = false;  // kernels/packed_matrix.h has an interleaved layout for it
};

const TypeTraits& type_traits(DType t);

// The number of blocks in a row of n elements of `type`; throws baichuan::Error, its message starting
// with `doing`, when n is negative or not a whole number of blocks.
int64_t whole_blocks(DType type, int64_t n, std::string_view doing);

// The one converter from float rows to stored rows: n floats into `type` (F32, F16, BF16, or a block
// type with from_float) at dst (any alignment). Throws baichuan::Error for another type or when n is
// not a whole number of blocks.
void from_float_row(DType type, const float* src, std::byte* dst, int64_t n);

}  // namespace baichuan::quant
