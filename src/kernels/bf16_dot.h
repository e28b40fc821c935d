// Products of BF16 weight rows with activations rounded to bfloat16 (the medium matmul precision,
// matmul_precision.h): each product of two bfloat16 values is exact in float32, the sums are float32.
// A plain scalar reference and the AVX512_BF16 kernel (`vdpbf16ps`: 32 pairs per instruction).
#pragma once
#include <cstddef>
#include <cstdint>

namespace baichuan::kernels {

// out[i] = bfloat16(x[i]), rounded to nearest even (core/half.h's f32_to_bf16).
void round_to_bf16(const float* x, uint16_t* out, int64_t n);

// A register tile as vec.h's dot_tile (r < nr <= kTileRows, t < nt <= kTileTokens):
// out[t * out_stride + r] = sum_i bf16 w[r][i] * x[t * n + i], w[r] at w + r * w_row_bytes (any
// address: rows of a mapped file).
namespace scalar {
void bf16_tile(const std::byte* w, size_t w_row_bytes, int nr, const uint16_t* x, int nt, int64_t n, float* out,
               int64_t out_stride);
}
namespace avx512 {  // needs AVX512_BF16 besides the avx512 path's flags
void bf16_tile(const std::byte* w, size_t w_row_bytes, int nr, const uint16_t* x, int nt, int64_t n, float* out,
               int64_t out_stride);
}

}  // namespace baichuan::kernels
