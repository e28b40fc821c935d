// Element types of tensors in checkpoint files, including the GGUF block-quantized ones.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace baichuan {

enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, I16, I32, I64, U8, Bool,
  // GGUF block formats: a row of n elements is n / block_elems blocks of block_bytes each.
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
};

struct DTypeInfo {
  std::string_view name;
  size_t block_elems;  // 1 for plain scalar types
  size_t block_bytes;  // bytes of one element or one block
};

constexpr DTypeInfo dtype_info(DType t) {
  switch (t) {
    case DType::F32: return {"F32", 1, 4};
    case DType::F16: return {"F16", 1, 2};
    case DType::BF16: return {"BF16", 1, 2};
    case DType::F64: return {"F64", 1, 8};
    case DType::I8: return {"I8", 1, 1};
    case DType::I16: return {"I16", 1, 2};
    case DType::I32: return {"I32", 1, 4};
    case DType::I64: return {"I64", 1, 8};
    case DType::U8: return {"U8", 1, 1};
    case DType::Bool: return {"BOOL", 1, 1};
    case DType::Q4_0: return {"Q4_0", 32, 18};
    case DType::Q4_1: return {"Q4_1", 32, 20};
    case DType::Q5_0: return {"Q5_0", 32, 22};
    case DType::Q5_1: return {"Q5_1", 32, 24};
    case DType::Q8_0: return {"Q8_0", 32, 34};
    case DType::Q8_1: return {"Q8_1", 32, 36};
    case DType::Q2_K: return {"Q2_K", 256, 84};
    case DType::Q3_K: return {"Q3_K", 256, 110};
    case DType::Q4_K: return {"Q4_K", 256, 144};
    case DType::Q5_K: return {"Q5_K", 256, 176};
    case DType::Q6_K: return {"Q6_K", 256, 210};
    case DType::Q8_K: return {"Q8_K", 256, 292};
  }
  return {"?", 1, 1};
}

constexpr std::string_view dtype_name(DType t) { return dtype_info(t).name; }
constexpr bool is_quantized(DType t) { return dtype_info(t).block_elems > 1; }

}  // namespace baichuan
