#include "quant/quantize_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/half.h"
#include "quant/blocks.h"

namespace baichuan::quant {
namespace {

constexpr int kSubElems = 32;                          // a Q4_K / Q5_K sub-block
constexpr int kSubBlocks = kSuperElems / kSubElems;    // 8
constexpr int kSubElems6 = 16;                         // a Q6_K sub-block
constexpr int kSubBlocks6 = kSuperElems / kSubElems6;  // 16
constexpr int kMax6Bit = 63;                           // largest packed Q4_K / Q5_K scale or min
constexpr int kQ6Lowest = -32, kQ6Highest = 31;        // Q6_K levels after removing the +32 bias
constexpr float kNegligible = 1e-15f;                  // a Q6_K sub-block this small is all zeros

template <typename Block>
void store_block(std::byte* dst, int64_t i, const Block& b) {
  std::memcpy(dst + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

// Nearest integer (ties to even, as ggml's nearest_int) clamped to [lo, hi]. Clamping before the
// conversion keeps it defined for NaN (-> lo) and for values too large for an int.
int round_clamped(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(std::nearbyint(v));
}

// ---------------------------------------------------------------- Q4_K / Q5_K

// One sub-block as x ~ scale * q - offset with q in [0, qmax], before scale and offset are
// rounded to 6 bits. The offset is never negative: the format can only subtract it.
struct AffineFit {
  float scale = 0.0f;
  float offset = 0.0f;
};

// The grids fit_affine tries besides plain min/max: grid k (0..steps) spreads the sub-block's
// range over qmax + first + k * step levels.
struct GridSearch {
  float first;
  float step;
  int steps;
};

// Errors on large elements matter most (they dominate a matmul's output), but the block RMS term
// keeps the small ones from being ignored.
void importance_weights(const float* x, float* w) {
  float sum_sq = 0.0f;
  for (int l = 0; l < kSubElems; ++l) sum_sq += x[l] * x[l];
  const float rms = std::sqrt(sum_sq / kSubElems);
  for (int l = 0; l < kSubElems; ++l) w[l] = rms + std::fabs(x[l]);
}

void affine_levels(const float* x, float inv_scale, float lo, int qmax, uint8_t* q) {
  for (int l = 0; l < kSubElems; ++l)
    q[l] = static_cast<uint8_t>(round_clamped(inv_scale * (x[l] - lo), 0, qmax));
}

float weighted_error(const float* x, const float* w, const uint8_t* q, AffineFit fit) {
  float err = 0.0f;
  for (int l = 0; l < kSubElems; ++l) {
    const float diff = fit.scale * q[l] - fit.offset - x[l];
    err += w[l] * diff * diff;
  }
  return err;
}

// Weighted least-squares scale and offset for fixed levels; nothing when the levels are all equal.
std::optional<AffineFit> refit(const float* x, const float* w, const uint8_t* q) {
  float sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
  for (int l = 0; l < kSubElems; ++l) {
    sw += w[l];
    sq += w[l] * q[l];
    sqq += w[l] * q[l] * q[l];
    sx += w[l] * x[l];
    sxq += w[l] * x[l] * q[l];
  }
  const float det = sw * sqq - sq * sq;
  if (!(det > 0.0f)) return std::nullopt;
  const float scale = (sw * sxq - sx * sq) / det;
  const float bias = (sqq * sx - sq * sxq) / det;
  // A positive bias cannot be stored; the best fit through the origin replaces it.
  if (bias > 0.0f) return AffineFit{sxq / sqq, 0.0f};
  return AffineFit{scale, -bias};
}

// Starts from the grid spanning [min(x, 0), max(x)], then tries slightly finer and coarser grids,
// each refitted by least squares, and keeps the one with the smallest weighted error. Each grid
// starts at the best offset found so far, so the search refines the fit rather than restarting.
AffineFit fit_affine(const float* x, const float* w, int qmax, GridSearch search) {
  float lo = 0.0f, hi = -INFINITY;  // lo <= 0: the offset can only pull values down
  for (int l = 0; l < kSubElems; ++l) {
    lo = std::min(lo, x[l]);
    hi = std::max(hi, x[l]);
  }
  if (!(hi > lo)) return {0.0f, -lo};  // constant (or NaN) sub-block: the offset alone
  uint8_t q[kSubElems];
  affine_levels(x, static_cast<float>(qmax) / (hi - lo), lo, qmax, q);
  AffineFit best{(hi - lo) / static_cast<float>(qmax), -lo};
  float best_err = weighted_error(x, w, q, best);
  for (int k = 0; k <= search.steps; ++k) {
    const float origin = -best.offset;
    const float levels =
        static_cast<float>(qmax) + search.first + search.step * static_cast<float>(k);
    affine_levels(x, levels / (hi - origin), origin, qmax, q);
    const std::optional<AffineFit> fit = refit(x, w, q);
    if (!fit) continue;
    const float err = weighted_error(x, w, q, *fit);
    if (err < best_err) {
      best = *fit;
      best_err = err;
    }
  }
  return best;
}

// Inverse of scale_min_k4: ORs the 6-bit scale and min of sub-block j into the zeroed 12 bytes.
void pack_scale_min(uint8_t* packed, int j, int scale, int min) {
  if (j < 4) {
    packed[j] |= static_cast<uint8_t>(scale);
    packed[j + 4] |= static_cast<uint8_t>(min);
    return;
  }
  packed[j + 4] = static_cast<uint8_t>((scale & 0x0F) | (min & 0x0F) << 4);
  packed[j - 4] |= static_cast<uint8_t>((scale >> 4) << 6);
  packed[j] |= static_cast<uint8_t>((min >> 4) << 6);
}

// A Q4_K / Q5_K super-block before its levels are bit-packed.
struct AffineSuperBlock {
  uint16_t d = 0, dmin = 0;
  uint8_t scales[kScaleBytesK] = {};
  uint8_t q[kSuperElems] = {};  // 0..qmax
};

// Fits each sub-block, expresses the scales and offsets as 6-bit multiples of the largest ones,
// then picks the levels against the scales as stored (6-bit times f16), as dequantization will.
AffineSuperBlock quantize_affine_super(const float* x, int qmax, GridSearch search) {
  AffineFit fits[kSubBlocks];
  float w[kSubElems];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int s = 0; s < kSubBlocks; ++s) {
    importance_weights(x + s * kSubElems, w);
    fits[s] = fit_affine(x + s * kSubElems, w, qmax, search);
    max_scale = std::max(max_scale, fits[s].scale);
    max_offset = std::max(max_offset, fits[s].offset);
  }
  AffineSuperBlock b;
  const float to_scale6 = max_scale > 0.0f ? kMax6Bit / max_scale : 0.0f;
  const float to_offset6 = max_offset > 0.0f ? kMax6Bit / max_offset : 0.0f;
  for (int s = 0; s < kSubBlocks; ++s)
    pack_scale_min(b.scales, s, round_clamped(fits[s].scale * to_scale6, 0, kMax6Bit),
                   round_clamped(fits[s].offset * to_offset6, 0, kMax6Bit));
  b.d = f32_to_f16(max_scale / kMax6Bit);
  b.dmin = f32_to_f16(max_offset / kMax6Bit);

  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int s = 0; s < kSubBlocks; ++s) {
    const ScaleMin sm = scale_min_k4(b.scales, s);
    const float step = d * sm.scale, offset = dmin * sm.min;
    if (step == 0.0f) continue;  // every level decodes to -offset; leave them 0
    for (int l = 0; l < kSubElems; ++l) {
      const float t = (x[s * kSubElems + l] + offset) / step;
      b.q[s * kSubElems + l] = static_cast<uint8_t>(round_clamped(t, 0, qmax));
    }
  }
  return b;
}

// A Q4_K/Q5_K block holding the super-block's d, dmin and packed scales; the codes are the caller's.
template <typename Block>
Block with_scales(const AffineSuperBlock& a) {
  Block b{};
  b.d = a.d;
  b.dmin = a.dmin;
  std::memcpy(b.scales, a.scales, kScaleBytesK);
  return b;
}

// ---------------------------------------------------------------- Q6_K

// Signed scale of one 16-element sub-block, x ~ scale * q with q in [-32, 31]. The element of
// largest magnitude goes to level -32 (the side with the extra level); grids a little finer and
// coarser are tried too, each refitted by least squares weighted by x^2 (keeping the large elements
// most accurate), and the one with the smallest error wins.
float fit_symmetric(const float* x) {
  float amax = 0.0f, extreme = 0.0f;
  for (int l = 0; l < kSubElems6; ++l) {
    if (std::fabs(x[l]) > amax) {
      amax = std::fabs(x[l]);
      extreme = x[l];
    }
  }
  if (amax < kNegligible) return 0.0f;
  float best_scale = 0.0f, best_gain = 0.0f;
  for (int k = -9; k <= 9; ++k) {
    const float levels = static_cast<float>(-kQ6Lowest) + 0.1f * static_cast<float>(k);
    const float inv_scale = -levels / extreme;
    float sxq = 0.0f, sqq = 0.0f;
    for (int l = 0; l < kSubElems6; ++l) {
      const float q = static_cast<float>(round_clamped(inv_scale * x[l], kQ6Lowest, kQ6Highest));
      const float w = x[l] * x[l];
      sxq += w * x[l] * q;
      sqq += w * q * q;
    }
    // With the least-squares scale sxq / sqq the weighted error is sum(w x^2) - sxq^2 / sqq.
    if (!(sqq > 0.0f)) continue;
    const float gain = sxq * sxq / sqq;
    if (gain > best_gain) {
      best_gain = gain;
      best_scale = sxq / sqq;
    }
  }
  return best_scale;
}

// In each half of 128 levels, element l + 32k (k = 0..3, l = 0..31) keeps its low 4 bits in
// ql[l + 32 (k % 2)] (low nibble for k < 2, high for k >= 2) and its top 2 bits at bit 2k of qh[l].
void pack_q6(const uint8_t* q, block_q6_K& b) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* v = q + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((v[l] & 0x0F) | (v[l + 64] & 0x0F) << 4);
      ql[l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0F) | (v[l + 96] & 0x0F) << 4);
      qh[l] = static_cast<uint8_t>(v[l] >> 4 | (v[l + 32] >> 4) << 2 | (v[l + 64] >> 4) << 4 |
                                   (v[l + 96] >> 4) << 6);
    }
  }
}

block_q6_K quantize_q6_super(const float* x) {
  float scales[kSubBlocks6];
  float amax = 0.0f, extreme = 0.0f;
  for (int s = 0; s < kSubBlocks6; ++s) {
    scales[s] = fit_symmetric(x + s * kSubElems6);
    if (std::fabs(scales[s]) > amax) {
      amax = std::fabs(scales[s]);
      extreme = scales[s];
    }
  }
  block_q6_K b{};
  if (amax < kNegligible) return b;  // d = 0: every element decodes to 0
  // The largest sub-block scale becomes -128, the end of int8 with the extra level.
  const float to_int8 = -128.0f / extreme;
  b.d = f32_to_f16(1.0f / to_int8);
  for (int s = 0; s < kSubBlocks6; ++s)
    b.scales[s] = static_cast<int8_t>(round_clamped(scales[s] * to_int8, -128, 127));

  // Levels against the scales as stored, as dequantization sees them.
  const float d = f16_to_f32(b.d);
  uint8_t q[kSuperElems];
  for (int s = 0; s < kSubBlocks6; ++s) {
    const float step = d * b.scales[s];
    for (int l = 0; l < kSubElems6; ++l) {
      const int e = s * kSubElems6 + l;
      const int level = step == 0.0f ? 0 : round_clamped(x[e] / step, kQ6Lowest, kQ6Highest);
      q[e] = static_cast<uint8_t>(level - kQ6Lowest);
    }
  }
  pack_q6(q, b);
  return b;
}

}  // namespace

void quantize_q4_K(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const AffineSuperBlock a = quantize_affine_super(src + i * kSuperElems, 15, {-1.0f, 0.1f, 20});
    block_q4_K b = with_scales<block_q4_K>(a);
    // Chunk c of 64 elements: sub-block 2c in the low nibbles of qs[32c..], 2c + 1 in the high.
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b.qs[32 * c + l] = static_cast<uint8_t>(a.q[64 * c + l] | a.q[64 * c + 32 + l] << 4);
    store_block(dst, i, b);
  }
}

void quantize_q5_K(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const AffineSuperBlock a = quantize_affine_super(src + i * kSuperElems, 31, {-0.5f, 0.1f, 15});
    block_q5_K b = with_scales<block_q5_K>(a);
    // As Q4_K for the low 4 bits; bit 4 of element l of sub-block s is bit s of qh[l].
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = a.q[64 * c + l], hi = a.q[64 * c + 32 + l];
        b.qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0F) | (hi & 0x0F) << 4);
        b.qh[l] |= static_cast<uint8_t>((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
      }
    }
    store_block(dst, i, b);
  }
}

void quantize_q6_K(const float* src, std::byte* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) store_block(dst, i, quantize_q6_super(src + i * kSuperElems));
}

}  // namespace baichuan::quant
