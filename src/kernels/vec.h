// Vector primitives the matrix products are built from, each with a plain scalar reference
// (namespace scalar) and a SIMD version; the plain names dispatch on the active backend.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::kernels {

float dot_f32(const float* a, const float* b, int64_t n);
// Dot product of a stored F32/F16/BF16 or NF4 (nf4_dot.h) row with a float vector, converting on
// the fly (one pass over the weights: what decoding, bound by memory bandwidth, wants).
float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n);
// Converts n elements of a row to float (F32/F16/BF16, or a block type through dequantization).
void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n);
// y[i] += a * row[i] for a stored F32/F16/BF16 row (attention's weighted sum of cached values).
void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n);
// A register tile of dot products: out[t * out_stride + r] = dot(w + r * n, x + t * n, n) for
// r < nr <= kTileRows, t < nt <= kTileTokens. Loads each weight once for several tokens (AVX-512's
// 32 registers hold the whole 4 x 6 tile; AVX2 runs it as two 4 x 3 tiles).
inline constexpr int kTileRows = 4, kTileTokens = 6;
void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride);

namespace scalar {
float dot_f32(const float* a, const float* b, int64_t n);
float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n);
void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n);
void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n);
void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride);
}  // namespace scalar

namespace avx2 {
float dot_f32(const float* a, const float* b, int64_t n);
float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n);
void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n);
void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n);
void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride);
}  // namespace avx2

namespace avx512 {
float dot_f32(const float* a, const float* b, int64_t n);
float dot_row(DType dtype, const std::byte* row, const float* x, int64_t n);
void row_to_f32(DType dtype, const std::byte* row, float* out, int64_t n);
void axpy_row(DType dtype, const std::byte* row, float a, float* y, int64_t n);
void dot_tile(const float* w, int nr, const float* x, int nt, int64_t n, float* out, int64_t out_stride);
}  // namespace avx512

}  // namespace baichuan::kernels
