// Element types of tensors in checkpoint files, including the block-quantized ones, with the layout
// facts every module needs (name, block size, bytes per block). What a block type can do (convert to
// and from float, dot products, packing) is in quant/type_traits.h.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace baichuan {

enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, I16, I32, I64, U8, Bool,
  // GGUF block formats: a row of n elements is n / block_elems blocks of block_bytes each.
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
  // bitsandbytes NF4 as this engine keeps it in memory (quant/blocks.h); no GGUF id.
  NF4,
};

inline constexpr size_t kDTypeCount = static_cast<size_t>(DType::NF4) + 1;

struct DTypeInfo {
  std::string_view name;
  size_t block_elems;  // 1 for plain scalar types
  size_t block_bytes;  // bytes of one element or one block
};

// Indexed by DType, in declaration order.
inline constexpr std::array<DTypeInfo, kDTypeCount> kDTypeInfo = {{
    {"F32", 1, 4},      {"F16", 1, 2},      {"BF16", 1, 2},     {"F64", 1, 8},      {"I8", 1, 1},
    {"I16", 1, 2},      {"I32", 1, 4},      {"I64", 1, 8},      {"U8", 1, 1},       {"BOOL", 1, 1},
    {"Q4_0", 32, 18},   {"Q4_1", 32, 20},   {"Q5_0", 32, 22},   {"Q5_1", 32, 24},   {"Q8_0", 32, 34},
    {"Q8_1", 32, 36},   {"Q2_K", 256, 84},  {"Q3_K", 256, 110}, {"Q4_K", 256, 144}, {"Q5_K", 256, 176},
    {"Q6_K", 256, 210}, {"Q8_K", 256, 292}, {"NF4", 64, 36},
}};

constexpr DTypeInfo dtype_info(DType t) {
  const auto i = static_cast<size_t>(t);
  return i < kDTypeCount ? kDTypeInfo[i] : DTypeInfo{"?", 1, 1};
}

constexpr std::string_view dtype_name(DType t) { return dtype_info(t).name; }
constexpr bool is_quantized(DType t) { return dtype_info(t).block_elems > 1; }

static_assert(dtype_name(DType::Q8_K) == "Q8_K" && dtype_name(DType::NF4) == "NF4", "kDTypeInfo follows DType");

}  // namespace baichuan
