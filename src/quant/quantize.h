// Quantization of f32 rows to GGUF block formats. The 32-element formats follow ggml's reference
// rounding rules (quantize_row_*_ref), so the bytes match what llama.cpp's reference quantizer
// writes. The K-quants follow ggml's search (make_qkx2_quants / make_qx_quants); their bytes
// matched ggml's on 1M random normal values, but float sums in another order may differ in ties.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::quant {

// True for the block types quantize_row accepts: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, NF4
// (those whose type_traits have from_float).
bool can_quantize(DType dtype);

// Quantizes src[0..n) into blocks of `dtype` at `dst` (any alignment). Per block of 32:
//   Q8_0: d = amax / 127, q = round(x / d) (half away from zero).
//   Q4_0: d = v / -8 where v is the element of largest magnitude, q = min(15, trunc(x / d + 8.5)).
//   Q5_0: d = v / -16, q = min(31, trunc(x / d + 16.5)).
//   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
//   Q5_1: d = (max - min) / 31, m = min, q = min(31, trunc((x - min) / d + 0.5)).
// The scale used for rounding is the f32 d; the block stores d (and m) rounded to f16.
// The K-quants take super-blocks of 256 (quantize_k.cpp):
//   Q4_K, Q5_K: per sub-block of 32, x ~ scale * q - min with q in [0, 15] / [0, 31]: start from
//     the grid spanning [min(x, 0), max(x)], try ~20 slightly finer/coarser grids, each refitted
//     by least squares weighted by rms + |x|, keep the best; then scales and mins become 6-bit
//     multiples of f16 d = max scale / 63 and dmin = max min / 63; q is re-rounded against them.
//   Q6_K: per sub-block of 16, x ~ scale * q with q in [-32, 31]: the element of largest
//     magnitude maps to about -32 (19 grids tried), least squares weighted by x^2; then the
//     scales become int8 multiples of f16 d with the largest at -128; q is re-rounded likewise.
// A block holding NaN or infinity gets unspecified (but well-defined) bytes; other blocks are unaffected.
// Throws baichuan::Error for an unsupported type or when n is not a multiple of the block size
// (32, or 256 for the K-quants).
//   NF4 (blocks of 64): d = max |x| stored as float32, each x / d to the nearest NF4 value.
void quantize_row(DType dtype, const float* src, std::byte* dst, int64_t n);

// The per-type quantizers type_traits points to (the K-quants' are in quantize_k.h): nb blocks.
void quantize_q8_0(const float* src, std::byte* dst, int64_t nb);
void quantize_q4_0(const float* src, std::byte* dst, int64_t nb);
void quantize_q4_1(const float* src, std::byte* dst, int64_t nb);
void quantize_q5_0(const float* src, std::byte* dst, int64_t nb);
void quantize_q5_1(const float* src, std::byte* dst, int64_t nb);
void quantize_nf4(const float* src, std::byte* dst, int64_t nb);

}  // namespace baichuan::quant
