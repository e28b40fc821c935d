// NF4 rows (the official 4-bit Chat linears kept in 4 bits, quant/blocks.h block_nf4) against float
// activations. Each block's 16 possible weights are computed once, exactly as dequantization makes
// them (float16(kNf4Values[c] * d), widened), into a small table; the codes then index that table
// and the products are float32 FMAs with the float32 activations. So a product differs from the one
// with the dequantized F16 weights only in the order of the float32 additions: the official
// computation's logits, not an approximation (the activations are never quantized).
//
// Each function has a plain scalar reference (namespace scalar, which the tests trust) and SIMD
// versions; vec.h's dot_row and row_to_f32 reach the active backend's (cpu.h) for NF4 rows. Every function is deterministic
// for a given backend (fixed summation order), whatever the number of threads calling it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace baichuan::kernels {

// The number of 64-element blocks in an NF4 row of n elements; throws baichuan::Error when n is
// negative or not a whole number of blocks (every function below checks n this way first).
int64_t nf4_blocks_in_row(int64_t n);

// In each backend: nf4_dot_row, the dot product of one NF4 row of n elements (a whole number of
// 64-element blocks; `row` at any alignment) with x[0..n); nf4_row_to_f32, the row's n weights as
// floats, bit-identical to quant::dequantize_row(DType::NF4, ...).
namespace scalar {
float nf4_dot_row(const std::byte* row, const float* x, int64_t n);
void nf4_row_to_f32(const std::byte* row, float* out, int64_t n);
}  // namespace scalar

namespace avx2 {
float nf4_dot_row(const std::byte* row, const float* x, int64_t n);
void nf4_row_to_f32(const std::byte* row, float* out, int64_t n);
}  // namespace avx2

namespace avx512 {
float nf4_dot_row(const std::byte* row, const float* x, int64_t n);
void nf4_row_to_f32(const std::byte* row, float* out, int64_t n);
}  // namespace avx512

}  // namespace baichuan::kernels
