// Quantization of f32 rows to GGUF block formats with ggml's reference rounding rules
// (quantize_row_*_ref), so the bytes match what llama.cpp's reference quantizer writes.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::quant {

// True for the block types quantize_row accepts: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
bool can_quantize(DType dtype);

// Quantizes src[0..n) into n / 32 blocks of `dtype` at `dst` (any alignment). Per block of 32:
//   Q8_0: d = amax / 127, q = round(x / d) (half away from zero).
//   Q4_0: d = v / -8 where v is the element of largest magnitude, q = min(15, trunc(x / d + 8.5)).
//   Q5_0: d = v / -16, q = min(31, trunc(x / d + 16.5)).
//   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
//   Q5_1: d = (max - min) / 31, m = min, q = min(31, trunc((x - min) / d + 0.5)).
// The scale used for rounding is the f32 d; the block stores d (and m) rounded to f16.
// A block holding NaN or infinity gets unspecified (but well-defined) bytes; other blocks are unaffected.
// Throws baichuan::Error for an unsupported type or when n is not a multiple of 32.
void quantize_row(DType dtype, const float* src, std::byte* dst, int64_t n);

}  // namespace baichuan::quant
