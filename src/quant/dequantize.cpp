#include "quant/dequantize.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/type_traits.h"

namespace baichuan::quant {
namespace {

// Reads block i of a row; memcpy because the row may sit at any address in a mapped file.
template <typename Block>
Block load_block(const std::byte* src, int64_t i) {
  Block b;
  std::memcpy(&b, src + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

uint32_t load_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Sub-block s of a Q4_K/Q5_K super-block as x = d * q - m: d = d_super * scale_s, m = dmin * min_s.
struct SubBlockAffine {
  float d, m;
};
template <typename Block>
SubBlockAffine sub_block_affine(const Block& b, float d, float dmin, int s) {
  const ScaleMin sm = scale_min_k4(b.scales, s);
  return {d * sm.scale, dmin * sm.min};
}

}  // namespace

void dequantize_q8_0(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q8_0>(src, i);
    const float d = f16_to_f32(b.d);
    float* y = dst + i * kBlockElems;
    for (int j = 0; j < kBlockElems; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

void dequantize_q4_0(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q4_0>(src, i);
    const float d = f16_to_f32(b.d);
    float* y = dst + i * kBlockElems;
    for (int j = 0; j < kBlockElems / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + kBlockElems / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q4_1>(src, i);
    const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
    float* y = dst + i * kBlockElems;
    for (int j = 0; j < kBlockElems / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
      y[j + kBlockElems / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

namespace {
// The 5-bit values of a Q5_0 / Q5_1 block: low nibbles from qs, fifth bits from qh.
template <typename Block>
void unpack_q5(const Block& b, int q[kBlockElems]) {
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < kBlockElems / 2; ++j) {
    const int k = j + kBlockElems / 2;
    q[j] = (b.qs[j] & 0x0F) | static_cast<int>((qh >> j) & 1u) << 4;
    q[k] = (b.qs[j] >> 4) | static_cast<int>((qh >> k) & 1u) << 4;
  }
}

}  // namespace

void dequantize_q5_0(const std::byte* src, float* dst, int64_t nb) {
  int q[kBlockElems];
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q5_0>(src, i);
    const float d = f16_to_f32(b.d);
    unpack_q5(b, q);
    float* y = dst + i * kBlockElems;
    for (int j = 0; j < kBlockElems; ++j) y[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void dequantize_q5_1(const std::byte* src, float* dst, int64_t nb) {
  int q[kBlockElems];
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q5_1>(src, i);
    const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
    unpack_q5(b, q);
    float* y = dst + i * kBlockElems;
    for (int j = 0; j < kBlockElems; ++j) y[j] = static_cast<float>(q[j]) * d + m;
  }
}

// Q4_K: four chunks of 64 elements; chunk c reads qs[32c .. 32c+32): low nibbles are sub-block 2c,
// high nibbles sub-block 2c + 1.
void dequantize_q4_K(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q4_K>(src, i);
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    float* y = dst + i * kSuperElems;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = b.qs + 32 * c;
      const SubBlockAffine lo = sub_block_affine(b, d, dmin, 2 * c), hi = sub_block_affine(b, d, dmin, 2 * c + 1);
      for (int l = 0; l < 32; ++l) y[64 * c + l] = lo.d * static_cast<float>(q[l] & 0x0F) - lo.m;
      for (int l = 0; l < 32; ++l) y[64 * c + 32 + l] = hi.d * static_cast<float>(q[l] >> 4) - hi.m;
    }
  }
}

// Q5_K: as Q4_K, plus bit 4 of element l of sub-block s in bit s of qh[l].
void dequantize_q5_K(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q5_K>(src, i);
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    float* y = dst + i * kSuperElems;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = b.qs + 32 * c;
      const int s1 = 2 * c, s2 = 2 * c + 1;
      const SubBlockAffine lo = sub_block_affine(b, d, dmin, s1), hi = sub_block_affine(b, d, dmin, s2);
      for (int l = 0; l < 32; ++l) {
        const int q1 = (q[l] & 0x0F) | ((b.qh[l] >> s1) & 1) << 4;
        const int q2 = (q[l] >> 4) | ((b.qh[l] >> s2) & 1) << 4;
        y[64 * c + l] = lo.d * static_cast<float>(q1) - lo.m;
        y[64 * c + 32 + l] = hi.d * static_cast<float>(q2) - hi.m;
      }
    }
  }
}

// Q6_K: two halves of 128 elements; half h uses ql[64h .. 64h+64), qh[32h .. 32h+32) and
// scales[8h .. 8h+8). Within a half, for l in 0..31:
//   element l      = ql[l] low nibble      | qh[l] bits 0-1 << 4
//   element l + 32 = ql[l + 32] low nibble | qh[l] bits 2-3 << 4
//   element l + 64 = ql[l] high nibble     | qh[l] bits 4-5 << 4
//   element l + 96 = ql[l + 32] high nibble| qh[l] bits 6-7 << 4
// and element e of the half has scale scales[8h + e / 16]; x = d * scale * (q - 32).
void dequantize_q6_K(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_q6_K>(src, i);
    const float d = f16_to_f32(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* y = dst + i * kSuperElems + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int q[4] = {
            ((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32,
            ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32,
            ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32,
            ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32,
        };
        for (int k = 0; k < 4; ++k) {
          const int e = l + 32 * k;
          y[e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q[k]);
        }
      }
    }
  }
}

// NF4: x = float16(value * d), as bitsandbytes rounds (a single multiply: nothing to fuse).
void dequantize_nf4(const std::byte* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load_block<block_nf4>(src, i);
    float d;
    std::memcpy(&d, b.d, 4);
    float* y = dst + i * kNf4BlockElems;
    for (int j = 0; j < kNf4BlockElems / 2; ++j) {
      y[j] = f16_to_f32(f32_to_f16(kNf4Values[b.qs[j] & 0x0F] * d));
      y[j + kNf4BlockElems / 2] = f16_to_f32(f32_to_f16(kNf4Values[b.qs[j] >> 4] * d));
    }
  }
}

bool can_dequantize(DType dtype) { return is_quantized(dtype) && type_traits(dtype).to_float != nullptr; }

void dequantize_row(DType dtype, const std::byte* src, float* dst, int64_t n) {
  if (!can_dequantize(dtype)) fail("dequantize_row: unsupported type ", dtype_name(dtype));
  type_traits(dtype).to_float(src, dst, whole_blocks(dtype, n, "dequantize_row"));
}

}  // namespace baichuan::quant
