// The small per-token operations of the forward pass, in float32 as the official code computes them.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace baichuan::kernels {

// out = x / sqrt(mean(x^2) + eps) * weight (weight in its stored type).
void rms_norm(const float* x, const Tensor& weight, float eps, float* out, int64_t n);

// Rotary embedding tables: inv_freq[i] = 1 / theta^(2i/dim), computed in float32 like the official code.
std::vector<float> rope_inv_freq(int64_t head_dim, float theta);

// The rotation of position `pos`: cos_sin[2i], cos_sin[2i + 1] = cos, sin of pos * inv_freq[i] for the
// inv_freq.size() pairs of a head. One row's rotation serves every head of its Q and K in every layer.
void rope_rotation(int64_t pos, const std::vector<float>& inv_freq, float* cos_sin);

// Rotates one head vector in place by a rope_rotation. `interleaved` = pairs (2i, 2i+1) (llama.cpp's
// GGUF layout, whose Q/K rows are permuted to match); otherwise pairs (i, i + dim/2) (rotate_half).
void apply_rope(float* head, int64_t head_dim, const float* cos_sin, bool interleaved);

// ALiBi slopes for any head count: the powers 2^(-max_bias/n * (h+1)) for the closest power of two n
// below the head count, then every other slope of the 2n series for the rest.
std::vector<float> alibi_slopes(int64_t n_heads, float max_bias);

void softmax_inplace(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

}  // namespace baichuan::kernels
