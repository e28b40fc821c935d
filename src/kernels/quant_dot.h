// Integer dot products of a stored quantized weight row with activations quantized on the fly to
// 8-bit blocks: the inner loop of decoding with Q8_0/Q4_x/Q5_x/K-quant weights (NF4 weights multiply
// float activations instead, exactly: nf4_dot.h). The activations of a token are quantized once per
// matrix; every row of that matrix is then one pass over its bytes, multiplying 8-bit integers and
// scaling once per block.
//
// Each function has a plain scalar reference (namespace scalar) that computes every block in exact
// integer arithmetic and a SIMD version; the plain names dispatch on the active backend (cpu.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "quant/type_traits.h"

namespace baichuan::kernels {

// Activations for 32-element weight blocks: x[i] ≈ d * qs[i], with s = d * sum(qs) precomputed
// (so the offset or min term of a weight block costs one multiply) and sum(qs) itself (the exact
// integer offset of the AVX-512 Q8_0 tile, which feeds signed weights to vpdpbusd as w + 128).
struct ActBlock32 {
  float d;
  float s;
  int32_t sum;
  int8_t qs[32];
};

// Activations for 256-element K-quant super-blocks: x[i] ≈ d * qs[i]; bsums[j] = sum of
// qs[16j .. 16j+15] (what the mins of Q4_K/Q5_K and the -32 offset of Q6_K multiply).
struct ActBlock256 {
  float d;
  int16_t bsums[16];
  int8_t qs[256];
};

static_assert(sizeof(ActBlock32) == 44 && sizeof(ActBlock256) == 292, "no padding: buffers are memcmp-able");

using ActivationKind = quant::DotActivations;

// What quant::type_traits says (Blocks32 for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, Blocks256 for Q4_K/Q5_K/Q6_K);
// throws baichuan::Error for a type without an integer dot product.
ActivationKind activation_kind(DType weight_type);

// The dot kernel of one weight type and backend: n_blocks activation blocks (ActBlock32 or
// ActBlock256 as activation_kind says) against one row. Each backend keeps a table of them by type.
using DotKernel = float (*)(const std::byte* row, const void* act, int64_t n_blocks);
// The number of activation blocks holding n elements; throws when n is negative or not a whole
// number of weight blocks, or for an unsupported weight type.
int64_t activation_blocks(DType weight_type, int64_t n);
// Bytes to hold n quantized activations for weights of weight_type (a buffer aligned for float).
size_t activation_bytes(DType weight_type, int64_t n);

// Quantizes x[0..n) for dot_quantized with weights of weight_type, per block: d = amax / 127,
// qs = round-to-nearest-even(x / d) (an all-zero block gets d = 0). `out` holds activation_bytes
// and is aligned for float.
void quantize_activations(DType weight_type, const float* x, int64_t n, void* out);

// Dot product of one stored row of weight_type (n elements, `row` at any alignment) with
// activations made by quantize_activations for the same type and n.
float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n);

namespace scalar {
void quantize_activations(DType weight_type, const float* x, int64_t n, void* out);
float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n);
}  // namespace scalar

namespace avx2 {
void quantize_activations(DType weight_type, const float* x, int64_t n, void* out);
float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n);
}  // namespace avx2

namespace avx512 {  // activations only: the AVX-512 backend runs the AVX2 row dots
void quantize_activations(DType weight_type, const float* x, int64_t n, void* out);
}  // namespace avx512

}  // namespace baichuan::kernels
