// Quantization of f32 rows to the K-quant block formats (Q4_K, Q5_K, Q6_K), laid out as ggml's
// block_q4_K / block_q5_K / block_q6_K. Called through quantize_row (quantize.h), which checks the
// type and the length; the algorithms are described there.
#pragma once
#include <cstddef>
#include <cstdint>

namespace baichuan::quant {

// Each writes nb super-blocks of 256 elements from src[0 .. 256 * nb) to dst (any alignment).
void quantize_q4_K(const float* src, std::byte* dst, int64_t nb);
void quantize_q5_K(const float* src, std::byte* dst, int64_t nb);
void quantize_q6_K(const float* src, std::byte* dst, int64_t nb);

}  // namespace baichuan::quant
