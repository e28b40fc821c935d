#include "quant/quantize.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/quantize_k.h"
#include "quant/type_traits.h"

namespace baichuan::quant {
namespace {

template <typename Block>
void store_block(std::byte* dst, int64_t i, const Block& b) {
  std::memcpy(dst + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

void store_u32_le(uint8_t* p, uint32_t v) {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<uint8_t>(v >> (8 * k));
}

// Truncates toward zero and clamps to [lo, hi], as ggml's (int8_t) casts followed by MIN do for
// in-range values; clamping first keeps the conversion defined for NaN and huge inputs.
int trunc_clamped(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;  // also NaN
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

// The element of largest magnitude (the first one on ties), with its sign.
float signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kBlockElems; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// 1 / d, or 0 for an all-zero block (whose codes then all take the zero point).
float inverse_step(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

// A block stored as min + d * q with q in 0..levels (Q4_1, Q5_1): its min, d and 1 / d.
struct MinStep {
  float min, d, id;
};
MinStep min_step(const float* x, float levels) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kBlockElems; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / levels;
  return {min, d, inverse_step(d)};
}

}  // namespace

void quantize_q8_0(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kBlockElems;
    float amax = 0.0f;
    for (int j = 0; j < kBlockElems; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = inverse_step(d);
    block_q8_0 b{};
    b.d = f32_to_f16(d);
    for (int j = 0; j < kBlockElems; ++j) {
      const float r = std::round(x[j] * id);
      b.qs[j] = static_cast<int8_t>(trunc_clamped(r, -127, 127));
    }
    store_block(dst, i, b);
  }
}

void quantize_q4_0(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kBlockElems;
    const float d = signed_absmax(x) / -8.0f;
    const float id = inverse_step(d);
    block_q4_0 b{};
    b.d = f32_to_f16(d);
    for (int j = 0; j < kBlockElems / 2; ++j) {
      const int q0 = trunc_clamped(x[j] * id + 8.5f, 0, 15);
      const int q1 = trunc_clamped(x[j + kBlockElems / 2] * id + 8.5f, 0, 15);
      b.qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
    store_block(dst, i, b);
  }
}

void quantize_q4_1(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kBlockElems;
    const MinStep a = min_step(x, 15.0f);
    block_q4_1 b{};
    b.d = f32_to_f16(a.d);
    b.m = f32_to_f16(a.min);
    for (int j = 0; j < kBlockElems / 2; ++j) {
      const int q0 = trunc_clamped((x[j] - a.min) * a.id + 0.5f, 0, 15);
      const int q1 = trunc_clamped((x[j + kBlockElems / 2] - a.min) * a.id + 0.5f, 0, 15);
      b.qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
    store_block(dst, i, b);
  }
}

namespace {
// Packs 5-bit values: low nibbles into qs (element j low, j + 16 high), fifth bits into qh.
template <typename Block>
void pack_q5(const int q[kBlockElems], Block& b) {
  uint32_t qh = 0;
  for (int j = 0; j < kBlockElems / 2; ++j) {
    const int k = j + kBlockElems / 2;
    b.qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | (q[k] & 0x0F) << 4);
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[k] >> 4) & 1) << k;
  }
  store_u32_le(b.qh, qh);
}

}  // namespace

void quantize_q5_0(const float* src, std::byte* dst, int64_t nb) {
  int q[kBlockElems];
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kBlockElems;
    const float d = signed_absmax(x) / -16.0f;
    const float id = inverse_step(d);
    block_q5_0 b{};
    b.d = f32_to_f16(d);
    for (int j = 0; j < kBlockElems; ++j) q[j] = trunc_clamped(x[j] * id + 16.5f, 0, 31);
    pack_q5(q, b);
    store_block(dst, i, b);
  }
}

void quantize_q5_1(const float* src, std::byte* dst, int64_t nb) {
  int q[kBlockElems];
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kBlockElems;
    const MinStep a = min_step(x, 31.0f);
    block_q5_1 b{};
    b.d = f32_to_f16(a.d);
    b.m = f32_to_f16(a.min);
    for (int j = 0; j < kBlockElems; ++j) q[j] = trunc_clamped((x[j] - a.min) * a.id + 0.5f, 0, 31);
    pack_q5(q, b);
    store_block(dst, i, b);
  }
}

// NF4: d = max |x|; each x / d takes the nearest code value (the first of two on a tie).
void quantize_nf4(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kNf4BlockElems;
    float amax = 0.0f;
    for (int j = 0; j < kNf4BlockElems; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float id = amax != 0.0f ? 1.0f / amax : 0.0f;
    auto code = [&](float v) {
      const float scaled = v * id;
      int best = 7;  // the code of 0, also for NaN
      for (int c = 0; c < 16; ++c)
        if (std::fabs(scaled - kNf4Values[c]) < std::fabs(scaled - kNf4Values[best])) best = c;
      return best;
    };
    block_nf4 b{};
    std::memcpy(b.d, &amax, 4);
    for (int j = 0; j < kNf4BlockElems / 2; ++j)
      b.qs[j] = static_cast<uint8_t>(code(x[j]) | code(x[j + kNf4BlockElems / 2]) << 4);
    store_block(dst, i, b);
  }
}

bool can_quantize(DType dtype) { return is_quantized(dtype) && type_traits(dtype).from_float != nullptr; }

void quantize_row(DType dtype, const float* src, std::byte* dst, int64_t n) {
  if (!can_quantize(dtype)) fail("quantize_row: unsupported type ", dtype_name(dtype));
  type_traits(dtype).from_float(src, dst, whole_blocks(dtype, n, "quantize_row"));
}

}  // namespace baichuan::quant
