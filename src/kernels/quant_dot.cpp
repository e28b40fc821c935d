#include "kernels/quant_dot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu.h"
#include "kernels/quant_dot_table.h"
#include "quant/blocks.h"

namespace baichuan::kernels {

ActivationKind activation_kind(DType weight_type) {
  const ActivationKind kind = quant::type_traits(weight_type).dot;
  if (kind == ActivationKind::None)
    fail("quantized dot product: unsupported weight type ", dtype_name(weight_type),
         " (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; float and NF4 weights multiply float activations)");
  return kind;
}

int64_t activation_blocks(DType weight_type, int64_t n) {
  const int64_t block = activation_kind(weight_type) == ActivationKind::Blocks32 ? 32 : 256;
  quant::whole_blocks(weight_type, n, "quantized dot product");  // a weight block is a multiple of block
  return n / block;
}

size_t activation_bytes(DType weight_type, int64_t n) {
  const auto blocks = static_cast<size_t>(activation_blocks(weight_type, n));
  return blocks * (activation_kind(weight_type) == ActivationKind::Blocks32 ? sizeof(ActBlock32)
                                                                              : sizeof(ActBlock256));
}

namespace scalar {
namespace {

using namespace quant;

// d = amax / 127 and qs = round(x / d), ties to even like the SIMD rounding; the clamp only matters
// when d is so small (subnormal) that it lost precision. Returns d.
float quantize_block(const float* x, int n, int8_t* qs) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::abs(x[i]));
  const float d = amax / 127.0f;
  for (int i = 0; i < n; ++i)
    qs[i] = d == 0.0f ? 0 : static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / d), -127.0f, 127.0f));
  return d;
}

int sum_of(const int8_t* qs, int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += qs[i];
  return sum;
}

void quantize_blocks32(const float* x, int64_t nb, ActBlock32* out) {
  for (int64_t i = 0; i < nb; ++i) {
    ActBlock32& b = out[i];
    b.d = quantize_block(x + i * 32, 32, b.qs);
    b.sum = sum_of(b.qs, 32);
    b.s = b.d * static_cast<float>(b.sum);
  }
}

void quantize_blocks256(const float* x, int64_t nb, ActBlock256* out) {
  for (int64_t i = 0; i < nb; ++i) {
    ActBlock256& b = out[i];
    b.d = quantize_block(x + i * 256, 256, b.qs);
    for (int j = 0; j < 16; ++j) b.bsums[j] = static_cast<int16_t>(sum_of(b.qs + 16 * j, 16));
  }
}

// Reads block i of a row; memcpy because the row may sit at any address in a mapped file.
template <typename Block>
Block load_block(const std::byte* row, int64_t i) {
  Block b;
  std::memcpy(&b, row + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

// A 32-element weight block as integer codes: x[j] = d * q[j] + m.
struct Codes32 {
  float d, m;
  int q[32];
};

void unpack_nibbles(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + 16] = qs[j] >> 4;
  }
}

template <typename Block>
void add_fifth_bits(const Block& b, int* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);  // little-endian, like the file
  for (int j = 0; j < 32; ++j) q[j] |= static_cast<int>((qh >> j) & 1u) << 4;
}

Codes32 codes(const block_q8_0& b) {
  Codes32 c{f16_to_f32(b.d), 0.0f, {}};
  for (int j = 0; j < 32; ++j) c.q[j] = b.qs[j];
  return c;
}

Codes32 codes(const block_q4_0& b) {
  Codes32 c{f16_to_f32(b.d), 0.0f, {}};
  unpack_nibbles(b.qs, c.q);
  for (int& q : c.q) q -= 8;
  return c;
}

Codes32 codes(const block_q4_1& b) {
  Codes32 c{f16_to_f32(b.d), f16_to_f32(b.m), {}};
  unpack_nibbles(b.qs, c.q);
  return c;
}

Codes32 codes(const block_q5_0& b) {
  Codes32 c{f16_to_f32(b.d), 0.0f, {}};
  unpack_nibbles(b.qs, c.q);
  add_fifth_bits(b, c.q);
  for (int& q : c.q) q -= 16;
  return c;
}

Codes32 codes(const block_q5_1& b) {
  Codes32 c{f16_to_f32(b.d), f16_to_f32(b.m), {}};
  unpack_nibbles(b.qs, c.q);
  add_fifth_bits(b, c.q);
  return c;
}

// sum_j (d_w * q_j + m_w) * d_a * a_j = d_w * d_a * sum(q * a) + m_w * s.
template <typename Block>
float dot_blocks32(const std::byte* row, const ActBlock32* act, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const Codes32 w = codes(load_block<Block>(row, i));
    const ActBlock32& a = act[i];
    int isum = 0;
    for (int j = 0; j < 32; ++j) isum += w.q[j] * a.qs[j];
    sum += w.d * a.d * static_cast<float>(isum);
    if (w.m != 0.0f) sum += w.m * a.s;
  }
  return sum;
}

// Q4_K / Q5_K: x = d * scale_j * q - dmin * min_j over sub-blocks j of 32, so per super-block
// d_a * (d * sum(scale_j * q * a) - dmin * sum(min_j * a)), both sums exact integers.
template <typename Block>
float dot_q45_K(const std::byte* row, const ActBlock256* act, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<Block>(row, i);
    const ActBlock256& a = act[i];
    int scaled = 0, mins = 0;
    for (int j = 0; j < 8; ++j) {
      const ScaleMin sm = scale_min_k4(b.scales, j);
      const uint8_t* qs = b.qs + 32 * (j / 2);  // sub-blocks 2c and 2c+1 share 32 bytes
      for (int l = 0; l < 32; ++l) {
        int q = j % 2 == 0 ? qs[l] & 0x0F : qs[l] >> 4;
        if constexpr (std::is_same_v<Block, block_q5_K>) q |= ((b.qh[l] >> j) & 1) << 4;
        const int av = a.qs[32 * j + l];
        scaled += sm.scale * q * av;
        mins += sm.min * av;
      }
    }
    sum += a.d * (f16_to_f32(b.d) * static_cast<float>(scaled) - f16_to_f32(b.dmin) * static_cast<float>(mins));
  }
  return sum;
}

// Q6_K: x = d * scale_g * (q - 32) over groups g of 16; see dequantize.cpp for the bit layout.
float dot_q6_K(const std::byte* row, const ActBlock256* act, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q6_K>(row, i);
    const ActBlock256& a = act[i];
    int isum = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int q[4] = {(ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4, (ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4,
                          (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4, (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4};
        for (int k = 0; k < 4; ++k) {
          const int e = 128 * h + l + 32 * k;
          isum += b.scales[e / 16] * (q[k] - 32) * a.qs[e];
        }
      }
    }
    sum += f16_to_f32(b.d) * a.d * static_cast<float>(isum);
  }
  return sum;
}

// The kernel families of quant_dot_table.h.
struct ScalarDots {
  template <typename Block>
  static constexpr auto blocks32 = &dot_blocks32<Block>;
  template <typename Block>
  static constexpr auto q45_K = &dot_q45_K<Block>;
  static constexpr auto q6_K = &dot_q6_K;
};

constexpr std::array<DotKernel, kDTypeCount> kDots = dot_kernel_table<ScalarDots>();

}  // namespace

void quantize_activations(DType weight_type, const float* x, int64_t n, void* out) {
  const int64_t nb = activation_blocks(weight_type, n);
  if (activation_kind(weight_type) == ActivationKind::Blocks32)
    quantize_blocks32(x, nb, static_cast<ActBlock32*>(out));
  else
    quantize_blocks256(x, nb, static_cast<ActBlock256*>(out));
}

float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n) {
  const int64_t nb = activation_blocks(weight_type, n);  // rejects types without a kernel
  return kDots[static_cast<size_t>(weight_type)](row, act, nb);
}

}  // namespace scalar

void quantize_activations(DType weight_type, const float* x, int64_t n, void* out) {
  switch (active_backend()) {
    case Backend::Avx512: return avx512::quantize_activations(weight_type, x, n, out);
    case Backend::Avx2: return avx2::quantize_activations(weight_type, x, n, out);
    default: return scalar::quantize_activations(weight_type, x, n, out);
  }
}

float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n) {
  return avx2_kernels() ? avx2::dot_quantized(weight_type, row, act, n)
                                           : scalar::dot_quantized(weight_type, row, act, n);
}

}  // namespace baichuan::kernels
