// Dequantization of GGUF block formats to f32 (scalar reference implementations).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::quant {

// True for the block types dequantize_row accepts: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, NF4
// (those whose type_traits have to_float).
bool can_dequantize(DType dtype);

// Converts n elements stored as `dtype` blocks at `src` (any alignment) into dst[0..n).
// Throws baichuan::Error for an unsupported type or when n is not a multiple of the block size.
void dequantize_row(DType dtype, const std::byte* src, float* dst, int64_t n);

// The per-type converters type_traits points to: nb blocks at src (any alignment) into dst.
void dequantize_q8_0(const std::byte* src, float* dst, int64_t nb);
void dequantize_q4_0(const std::byte* src, float* dst, int64_t nb);
void dequantize_q4_1(const std::byte* src, float* dst, int64_t nb);
void dequantize_q5_0(const std::byte* src, float* dst, int64_t nb);
void dequantize_q5_1(const std::byte* src, float* dst, int64_t nb);
void dequantize_q4_K(const std::byte* src, float* dst, int64_t nb);
void dequantize_q5_K(const std::byte* src, float* dst, int64_t nb);
void dequantize_q6_K(const std::byte* src, float* dst, int64_t nb);
void dequantize_nf4(const std::byte* src, float* dst, int64_t nb);

}  // namespace baichuan::quant
