// GGUF block formats: hand-made blocks decode to hand-computed values (the layouts are spelled out
// here, independently of src/quant), quantize -> dequantize round trips stay within the error the
// format allows, quantize writes the bytes ggml's reference quantizer writes, bad input throws.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "error_matchers.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/type_traits.h"
#include "quant_codec.h"
#include "random_inputs.h"

namespace baichuan::quant {
namespace quant_test {  // named, not anonymous: the tests compile as a unity build

template <typename Block>
std::vector<std::byte> bytes_of(const std::vector<Block>& blocks) {
  std::vector<std::byte> out(blocks.size() * sizeof(Block));
  std::memcpy(out.data(), blocks.data(), out.size());
  return out;
}

using baichuan::testing::throws_error;
using testing::decode;
using testing::encode;
using baichuan::testing::random_floats;

constexpr uint16_t kHalf = 0x3800;      // 0.5
constexpr uint16_t kQuarter = 0x3400;   // 0.25
constexpr uint16_t kOne = 0x3C00;       // 1.0
constexpr uint16_t kTwo = 0x4000;       // 2.0
constexpr uint16_t kMinusOne = 0xBC00;  // -1.0

// ---------------------------------------------------------------- hand-made blocks

TEST(QuantDequantize, Q8_0ElementJIsDTimesQsJ) {
  block_q8_0 b{};
  b.d = kHalf;
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  b.qs[31] = -128;
  auto y = decode(DType::Q8_0, bytes_of(std::vector{b}), 32);
  for (int j = 0; j < 31; ++j) EXPECT_EQ(y[j], (j - 16) * 0.5f) << j;
  EXPECT_EQ(y[31], -64.0f);
}

// Q4_0: byte j holds element j in its low nibble and element j + 16 in its high nibble;
// x = (q - 8) * d.
TEST(QuantDequantize, Q4_0LowNibblesFirstHalfHighNibblesSecondHalf) {
  block_q4_0 b{};
  b.d = kHalf;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  auto y = decode(DType::Q4_0, bytes_of(std::vector{b}), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f) << j;
  }
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
}

TEST(QuantDequantize, Q4_1IsQTimesDPlusM) {
  block_q4_1 b{};
  b.d = kQuarter;
  b.m = kMinusOne;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  auto y = decode(DType::Q4_1, bytes_of(std::vector{b}), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(y[j + 16], (15 - j) * 0.25f - 1.0f) << j;
  }
  EXPECT_EQ(y[31], -1.0f);
  EXPECT_EQ(y[15], 2.75f);
}

// Q5_x: the low 4 bits as in Q4_x; bit 4 of element e is bit e of qh read as a little-endian
// uint32. Here bits 0, 15 and 25 are set: qh bytes 0x01, 0x80, 0x00, 0x02.
constexpr uint8_t kQh[4] = {0x01, 0x80, 0x00, 0x02};
const std::set<int> kFifthBitSet = {0, 15, 25};

int q5_value(int e) {
  int low = e < 16 ? e : 31 - e;  // qs[j] = j | (15 - j) << 4
  return low | (kFifthBitSet.count(e) ? 16 : 0);
}

TEST(QuantDequantize, Q5_0FifthBitsFromLittleEndianQh) {
  block_q5_0 b{};
  b.d = kOne;
  std::memcpy(b.qh, kQh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  auto y = decode(DType::Q5_0, bytes_of(std::vector{b}), 32);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], static_cast<float>(q5_value(e) - 16)) << e;
  EXPECT_EQ(y[0], 0.0f);    // 0 | 16
  EXPECT_EQ(y[1], -15.0f);  // 1
  EXPECT_EQ(y[15], 15.0f);  // 15 | 16
  EXPECT_EQ(y[16], -1.0f);  // 15
  EXPECT_EQ(y[25], 6.0f);   // 6 | 16
  EXPECT_EQ(y[31], -16.0f); // 0
}

TEST(QuantDequantize, Q5_1FifthBitsFromLittleEndianQh) {
  block_q5_1 b{};
  b.d = kHalf;
  b.m = kTwo;
  std::memcpy(b.qh, kQh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  auto y = decode(DType::Q5_1, bytes_of(std::vector{b}), 32);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], q5_value(e) * 0.5f + 2.0f) << e;
  EXPECT_EQ(y[15], 17.5f);  // 31 * 0.5 + 2
  EXPECT_EQ(y[31], 2.0f);
}

// Q4_K / Q5_K scales: sub-blocks 0..7 get scales {1,2,3,4,5,6,7,40} and mins {0,1,2,3,4,5,6,33}.
// Bytes 0..3: low 6 bits = scale of sub-blocks 0..3, top 2 bits = top bits of scales of 4..7.
// Bytes 4..7: low 6 bits = min of sub-blocks 0..3, top 2 bits = top bits of mins of 4..7.
// Bytes 8..11: low nibble = low 4 bits of scale of 4..7, high nibble = low 4 bits of min of 4..7.
// 40 = 0b10'1000 (low 4 = 8, top 2 = 2), 33 = 0b10'0001 (low 4 = 1, top 2 = 2).
constexpr uint8_t kScalesK[12] = {1, 2, 3, 4 | 0x80, 0, 1, 2, 3 | 0x80, 0x45, 0x56, 0x67, 0x18};
constexpr int kSubScale[8] = {1, 2, 3, 4, 5, 6, 7, 40};
constexpr int kSubMin[8] = {0, 1, 2, 3, 4, 5, 6, 33};

TEST(QuantDequantize, ScaleMinK4Unpacking) {
  for (int j = 0; j < 8; ++j) {
    ScaleMin sm = scale_min_k4(kScalesK, j);
    EXPECT_EQ(sm.scale, kSubScale[j]) << j;
    EXPECT_EQ(sm.min, kSubMin[j]) << j;
  }
}

// Q4_K element e: chunk c = e / 64 uses qs[32c .. 32c + 32); r = e % 64 < 32 is the low nibble of
// qs[32c + r] (sub-block 2c), else the high nibble of qs[32c + r - 32] (sub-block 2c + 1).
// x = d * scale * q - dmin * min. Here qs[i] = i, d = 1, dmin = 0.5.
int q4k_low_bits(int e) {
  int c = e / 64, r = e % 64;
  int byte = 32 * c + r % 32;
  return r < 32 ? (byte & 0x0F) : (byte >> 4);
}

TEST(QuantDequantize, Q4_KSubBlocksScalesAndMins) {
  block_q4_K b{};
  b.d = kOne;
  b.dmin = kHalf;
  std::memcpy(b.scales, kScalesK, 12);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>(i);
  auto y = decode(DType::Q4_K, bytes_of(std::vector{b}), 256);
  for (int e = 0; e < 256; ++e) {
    int sub = e / 32;
    EXPECT_EQ(y[e], static_cast<float>(kSubScale[sub] * q4k_low_bits(e)) - 0.5f * kSubMin[sub]) << e;
  }
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[5], 5.0f);      // sub 0: 1 * 5 - 0
  EXPECT_EQ(y[40], -0.5f);    // sub 1: high nibble of qs[8] = 0 -> 2 * 0 - 0.5 * 1
  EXPECT_EQ(y[63], 1.5f);     // sub 1: high nibble of qs[31] = 1 -> 2 * 1 - 0.5
  EXPECT_EQ(y[200], 53.0f);   // sub 6: low nibble of qs[104] = 8 -> 7 * 8 - 0.5 * 6
  EXPECT_EQ(y[255], 263.5f);  // sub 7: high nibble of qs[127] = 7 -> 40 * 7 - 0.5 * 33
}

// Q5_K: as Q4_K, plus bit 4 of element l of sub-block s is bit s of qh[l]. Here qh[l] = 0x55 for
// even l (sub-blocks 0, 2, 4, 6) and 0xAA for odd l (sub-blocks 1, 3, 5, 7).
TEST(QuantDequantize, Q5_KFifthBitsPerSubBlock) {
  block_q5_K b{};
  b.d = kOne;
  b.dmin = kHalf;
  std::memcpy(b.scales, kScalesK, 12);
  for (int l = 0; l < 32; ++l) b.qh[l] = (l & 1) ? 0xAA : 0x55;
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>(i);
  auto y = decode(DType::Q5_K, bytes_of(std::vector{b}), 256);
  for (int e = 0; e < 256; ++e) {
    int sub = e / 32, l = e % 32;
    int q = q4k_low_bits(e) | ((l & 1) == (sub & 1) ? 16 : 0);
    EXPECT_EQ(y[e], static_cast<float>(kSubScale[sub] * q) - 0.5f * kSubMin[sub]) << e;
  }
  EXPECT_EQ(y[0], 16.0f);     // sub 0, l = 0: 0 | 16
  EXPECT_EQ(y[1], 1.0f);      // sub 0, l = 1: 1
  EXPECT_EQ(y[40], -0.5f);    // sub 1, l = 8: 0
  EXPECT_EQ(y[255], 903.5f);  // sub 7, l = 31: 7 | 16 -> 40 * 23 - 16.5
}

// Q6_K element e: half h = e / 128 uses ql[64h..), qh[32h..), scales[8h..); within the half
// r = e % 128, group k = r / 32, l = r % 32: the low 4 bits are the low nibble (k < 2) or high
// nibble (k >= 2) of ql[64h + l + 32 * (k % 2)], the high 2 bits are bits 2k..2k+1 of qh[32h + l];
// x = d * scales[8h + r / 16] * (q - 32). Here ql[i] = i, qh[i] = 0xE4 (bit pairs 0,1,2,3 from
// the bottom, so the high bits of group k are k), scales[s] = s + 1 (even s) or -(s + 1) (odd s).
TEST(QuantDequantize, Q6_KLayout) {
  block_q6_K b{};
  b.d = kHalf;
  for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 64; ++i) b.qh[i] = 0xE4;
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s % 2 == 0 ? s + 1 : -(s + 1));
  auto y = decode(DType::Q6_K, bytes_of(std::vector{b}), 256);
  for (int e = 0; e < 256; ++e) {
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    int byte = 64 * h + l + 32 * (k % 2);
    int q = (k < 2 ? (byte & 0x0F) : (byte >> 4)) | k << 4;
    int s = 8 * h + r / 16;
    EXPECT_EQ(y[e], 0.5f * b.scales[s] * static_cast<float>(q - 32)) << e;
  }
  EXPECT_EQ(y[0], -16.0f);    // q = 0, scale 1
  EXPECT_EQ(y[40], -12.0f);   // k = 1: ql[40] low = 8, | 16 = 24 -> -8; scale[2] = 3
  EXPECT_EQ(y[100], 63.0f);   // k = 3: ql[36] high = 2, | 48 = 50 -> 18; scale[6] = 7
  EXPECT_EQ(y[255], -184.0f); // k = 3: ql[127] high = 7, | 48 = 55 -> 23; scale[15] = -16
}

// Several blocks in a row: block i decodes into dst[i * block_elems ..).
TEST(QuantDequantize, BlocksFollowEachOther) {
  std::vector<block_q4_0> q4(3);
  std::vector<block_q6_K> q6(2);
  for (int i = 0; i < 3; ++i) {
    q4[i].d = f32_to_f16(static_cast<float>(i + 1));
    for (auto& v : q4[i].qs) v = 0x9A;  // low 10 -> 2, high 9 -> 1
  }
  for (int i = 0; i < 2; ++i) {
    q6[i].d = f32_to_f16(static_cast<float>(i + 1));
    for (auto& v : q6[i].ql) v = 0x11;
    for (auto& v : q6[i].qh) v = 0xAA;  // high bits 2 -> q = 33 -> 1
    for (auto& v : q6[i].scales) v = 3;
  }
  auto y4 = decode(DType::Q4_0, bytes_of(q4), 96);
  for (int e = 0; e < 96; ++e) EXPECT_EQ(y4[e], static_cast<float>((e / 32 + 1) * (e % 32 < 16 ? 2 : 1))) << e;
  auto y6 = decode(DType::Q6_K, bytes_of(q6), 512);
  for (int e = 0; e < 512; ++e) EXPECT_EQ(y6[e], static_cast<float>((e / 256 + 1) * 3)) << e;
  dequantize_row(DType::Q8_0, nullptr, nullptr, 0);  // an empty row is fine
}

// ---------------------------------------------------------------- round trips

// Error bound for one element of a block quantized from x[0..32) (the block's inputs), derived from
// the rounding rule: the f32 scale d rounds x to the nearest grid point (|t - q| <= 1/2 in grid
// units), except where clamping at the top of the range costs up to one step; then storing d (and m)
// as f16 moves a grid point by |q| * |d16 - d| (+ |m16 - m|). `slack` covers f32 rounding of x / d.
float error_bound(DType dtype, const float* x, int j) {
  float amax = 0, smax = 0, min = x[0], max = x[0];
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), smax = x[i];
    min = std::fmin(min, x[i]);
    max = std::fmax(max, x[i]);
  }
  auto f16_err = [](float v) { return std::fabs(f16_to_f32(f32_to_f16(v)) - v); };
  switch (dtype) {
    case DType::Q8_0: {
      float d = amax / 127;
      return d / 2 + 127 * f16_err(d) + 1e-4f * d;
    }
    case DType::Q4_0:
    case DType::Q5_0: {
      const float levels = dtype == DType::Q4_0 ? 8.0f : 16.0f;
      float d = smax / -levels;
      // t = x / d lies in [-levels, levels]; t > levels - 1/2 is clamped to levels - 1.
      float t = x[j] / d;
      float rounding = t > levels - 0.5f ? std::fabs(d) : std::fabs(d) / 2;
      return rounding + levels * f16_err(d) + 1e-4f * std::fabs(d);
    }
    case DType::Q4_1:
    case DType::Q5_1: {
      const float top = dtype == DType::Q4_1 ? 15.0f : 31.0f;
      float d = (max - min) / top;
      return d / 2 + top * f16_err(d) + f16_err(min) + 1e-4f * d;
    }
    default:
      ADD_FAILURE();
      return 0;
  }
}

const DType kQuantizable[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1};

TEST(QuantRoundTrip, RandomDataWithinFormatBound) {
  for (DType dtype : kQuantizable) {
    for (size_t n : {size_t{32}, size_t{96}, size_t{4096 + 32}}) {
      for (float mean : {0.0f, 3.0f}) {
        auto x = random_floats(n, static_cast<uint32_t>(n) + static_cast<uint32_t>(dtype), 1.5f, mean);
        auto y = decode(dtype, encode(dtype, x), static_cast<int64_t>(n));
        double sq = 0;
        for (size_t i = 0; i < n; ++i) {
          const float* block = x.data() + i / 32 * 32;
          ASSERT_LE(std::fabs(y[i] - x[i]), error_bound(dtype, block, static_cast<int>(i % 32)))
              << dtype_name(dtype) << " n=" << n << " i=" << i << " x=" << x[i] << " y=" << y[i];
          sq += (y[i] - x[i]) * (y[i] - x[i]);
        }
        // Sanity on the typical error: the more bits, the smaller (bounds for sigma = 1.5).
        double rms = std::sqrt(sq / static_cast<double>(n));
        double limit = dtype == DType::Q8_0 ? 0.02 : (dtype == DType::Q4_0 || dtype == DType::Q4_1) ? 0.35 : 0.18;
        EXPECT_LT(rms, limit) << dtype_name(dtype) << " n=" << n << " mean=" << mean;
      }
    }
  }
}

TEST(QuantRoundTrip, ZerosAndConstants) {
  for (DType dtype : kQuantizable) {
    std::vector<float> zeros(64, 0.0f);
    auto y = decode(dtype, encode(dtype, zeros), 64);
    for (float v : y) EXPECT_EQ(v, 0.0f) << dtype_name(dtype);
  }
  // A constant block is exact for the offset formats (d = 0, m = value) when m fits f16.
  for (DType dtype : {DType::Q4_1, DType::Q5_1}) {
    std::vector<float> c(32, -2.5f);
    auto y = decode(dtype, encode(dtype, c), 32);
    for (float v : y) EXPECT_EQ(v, -2.5f) << dtype_name(dtype);
  }
}

// NaN and infinity give unspecified bytes but no undefined behaviour (the sanitizer builds check
// the float-to-int conversions), and the finite blocks around them are unaffected.
TEST(QuantRoundTrip, NonFiniteInputsAreHandled) {
  for (DType dtype : kQuantizable) {
    std::vector<float> x(96, 1.0f);
    x[40] = std::nanf("");
    x[70] = INFINITY;
    x[71] = -INFINITY;
    auto y = decode(dtype, encode(dtype, x), 96);
    auto finite = decode(dtype, encode(dtype, std::vector<float>(32, 1.0f)), 32);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], finite[i]) << dtype_name(dtype);
  }
}

// Values already on the grid (d a power of two, the extreme level present) come back exactly.
TEST(QuantRoundTrip, GridValuesAreExact) {
  std::mt19937 rng(7);
  const float d = 0.125f;
  struct Case {
    DType dtype;
    int lo, hi;    // q range
    int offset;    // x = (q - offset) * d + m
    float m;
  };
  const Case cases[] = {
      {DType::Q8_0, -127, 127, 0, 0.0f},
      {DType::Q4_0, 0, 15, 8, 0.0f},
      {DType::Q5_0, 0, 31, 16, 0.0f},
      {DType::Q4_1, 0, 15, 0, -1.5f},
      {DType::Q5_1, 0, 31, 0, 0.75f},
  };
  for (const Case& c : cases) {
    const int n = 4096 + 32;
    std::uniform_int_distribution<int> pick(c.lo, c.hi);
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) {
      int q = pick(rng);
      // Fix the levels that define the block's scale: the lowest level (the value of largest
      // magnitude for Q4_0 / Q5_0, the min for Q4_1 / Q5_1) and, where it sets d, the highest.
      if (i % 32 == 0) q = c.lo;
      if (i % 32 == 1) q = c.hi;
      x[i] = static_cast<float>(q - c.offset) * d + c.m;
    }
    auto y = decode(c.dtype, encode(c.dtype, x), n);
    for (int i = 0; i < n; ++i) ASSERT_EQ(y[i], x[i]) << dtype_name(c.dtype) << " i=" << i;
  }
}

// ---------------------------------------------------------------- exact bytes

// Q8_0: amax = 6.35 -> d = 0.05, stored as f16 0x2A66 (614.4 steps of 2^-15 above 2^-5, rounded to
// 614 = 0x266, exponent field 10); q = round(x / 0.05).
TEST(QuantBytes, Q8_0MatchesHandComputed) {
  std::vector<float> x(32, 0.0f);
  x[0] = 6.35f;    // 127
  x[1] = -6.35f;   // -127 = 0x81
  x[3] = 1.0f;     // 20 = 0x14
  x[4] = -0.52f;   // -10.4 -> -10 = 0xF6
  x[5] = 0.126f;   // 2.52 -> 3
  x[6] = 0.074f;   // 1.48 -> 1
  x[7] = -0.076f;  // -1.52 -> -2 = 0xFE
  std::vector<uint8_t> expected(34, 0);
  expected[0] = 0x66;
  expected[1] = 0x2A;
  const uint8_t qs[8] = {0x7F, 0x81, 0x00, 0x14, 0xF6, 0x03, 0x01, 0xFE};
  std::memcpy(&expected[2], qs, 8);
  // A second, all-zero block: d = 0 and every q = 0.
  x.resize(64, 0.0f);
  expected.resize(68, 0);
  auto got = encode(DType::Q8_0, x);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(static_cast<uint8_t>(got[i]), expected[i]) << i;
}

// Q4_0: block 0 has its largest magnitude at -4.0, so d = -4 / -8 = 0.5 (f16 0x3800), 1/d = 2 and
// q = min(15, trunc(2x + 8.5)). Byte j = q[j] | q[j + 16] << 4.
//   x[0] = -4.0 -> 0;  x[1] = 3.9 -> trunc(16.3) = 16 -> clamped 15;  x[3] = 1.2 -> 10;
//   x[4] = -1.2 -> 6;  x[5] = 0.3 -> 9;  x[16] = 2.0 -> 12;  x[17] = -0.8 -> trunc(6.9) = 6;
//   x[31] = -3.0 -> trunc(2.5) = 2;  zeros -> 8.
// Block 1 has its largest magnitude at +4.0, so d = -0.5 (f16 0xB800): x[32] = 4 -> 0,
// x[48] = -1 -> trunc(10.5) = 10. Block 2 is all zeros: d = 0 / -8 = -0 (f16 0x8000, as ggml
// writes it), every q = 8.
TEST(QuantBytes, Q4_0MatchesHandComputed) {
  std::vector<float> x(96, 0.0f);
  x[0] = -4.0f;
  x[1] = 3.9f;
  x[3] = 1.2f;
  x[4] = -1.2f;
  x[5] = 0.3f;
  x[16] = 2.0f;
  x[17] = -0.8f;
  x[31] = -3.0f;
  x[32] = 4.0f;
  x[48] = -1.0f;
  std::vector<uint8_t> expected(54, 0x88);
  const uint8_t block0[18] = {0x00, 0x38, 0xC0, 0x6F, 0x88, 0x8A, 0x86, 0x89, 0x88,
                              0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x28};
  std::memcpy(&expected[0], block0, 18);
  expected[18] = 0x00;
  expected[19] = 0xB8;
  expected[20] = 0xA0;
  expected[36] = 0x00;
  expected[37] = 0x80;
  auto got = encode(DType::Q4_0, x);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(static_cast<uint8_t>(got[i]), expected[i]) << i;
  auto y = decode(DType::Q4_0, got, 96);
  EXPECT_EQ(y[1], 3.5f);  // the clamped element: one full step of error
  EXPECT_EQ(y[32], 4.0f);
}

// Q5_0 packing: d = -16 / -16 = 1 (0x3C00); q = trunc(x + 16.5); fifth bits into qh.
// x[0] = -16 -> 0; x[1] = 15 -> 31 (bit 1); x[20] = 3 -> 19 (bit 20); zeros -> 16 (bit set).
TEST(QuantBytes, Q5_0Packing) {
  std::vector<float> x(32, 0.0f);
  x[0] = -16.0f;
  x[1] = 15.0f;
  x[20] = 3.0f;
  auto got = encode(DType::Q5_0, x);
  block_q5_0 b;
  ASSERT_EQ(got.size(), sizeof b);
  std::memcpy(&b, got.data(), sizeof b);
  EXPECT_EQ(b.d, kOne);
  // Every element but x[0] has q >= 16, so qh = 0xFFFFFFFE.
  EXPECT_EQ(b.qh[0], 0xFE);
  EXPECT_EQ(b.qh[1], 0xFF);
  EXPECT_EQ(b.qh[2], 0xFF);
  EXPECT_EQ(b.qh[3], 0xFF);
  EXPECT_EQ(b.qs[0], 0x00);  // 0 | (16 & 15) << 4
  EXPECT_EQ(b.qs[1], 0x0F);  // 31 & 15 | 0
  EXPECT_EQ(b.qs[4], 0x30);  // 0 | 19 & 15 << 4
  EXPECT_EQ(b.qs[5], 0x00);
}

// ---------------------------------------------------------------- errors

TEST(QuantErrors, WrongLengthsThrow) {
  std::vector<std::byte> buf(1024);
  std::vector<float> f(1024);
  EXPECT_THROW(dequantize_row(DType::Q8_0, buf.data(), f.data(), 31), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_0, buf.data(), f.data(), 33), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_K, buf.data(), f.data(), 128), Error);
  EXPECT_THROW(dequantize_row(DType::Q6_K, buf.data(), f.data(), 288), Error);
  EXPECT_THROW(dequantize_row(DType::Q5_1, buf.data(), f.data(), -32), Error);
  EXPECT_THROW(quantize_row(DType::Q8_0, f.data(), buf.data(), 48), Error);
  EXPECT_THROW(quantize_row(DType::Q5_0, f.data(), buf.data(), 1), Error);
  EXPECT_THAT([&] { dequantize_row(DType::Q4_K, buf.data(), f.data(), 100); }, throws_error("Q4_K", "256"));
}

TEST(QuantErrors, UnsupportedTypesThrow) {
  std::vector<std::byte> buf(1024);
  std::vector<float> f(256);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::Q8_1, DType::Q2_K,
                  DType::Q3_K, DType::Q8_K}) {
    EXPECT_FALSE(can_dequantize(t));
    EXPECT_THROW(dequantize_row(t, buf.data(), f.data(), 256), Error) << dtype_name(t);
  }
  for (DType t : {DType::F32, DType::Q8_1, DType::Q2_K, DType::Q8_K}) {
    EXPECT_FALSE(can_quantize(t));
    EXPECT_THROW(quantize_row(t, f.data(), buf.data(), 256), Error) << dtype_name(t);
  }
  EXPECT_THAT([&] { quantize_row(DType::Q3_K, f.data(), buf.data(), 256); }, throws_error("Q3_K"));
  for (DType t : kQuantizable) EXPECT_TRUE(can_quantize(t) && can_dequantize(t));
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) EXPECT_TRUE(can_quantize(t) && can_dequantize(t));
}

// ---------------------------------------------------------------- NF4 and the traits table

// x = float16(value(c) * d): low nibbles are elements 0..31, high nibbles 32..63.
TEST(QuantNf4, DequantizeLayoutAndFloat16Rounding) {
  block_nf4 b{};
  const float d = 0.3f;
  std::memcpy(b.d, &d, 4);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<uint8_t>((j % 16) | ((15 - j % 16) << 4));
  std::vector<float> out(64);
  dequantize_row(DType::NF4, bytes_of(std::vector<block_nf4>{b}).data(), out.data(), 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(out[j], f16_to_f32(f32_to_f16(kNf4Values[j % 16] * d))) << j;
    EXPECT_EQ(out[j + 32], f16_to_f32(f32_to_f16(kNf4Values[15 - j % 16] * d))) << j;
  }
  EXPECT_NE(out[1], kNf4Values[1] * d);  // the rounding to float16 is there
}

// Each element gets the code whose value is nearest to x / max|x| (checked by brute force in double).
TEST(QuantNf4, QuantizeTakesTheNearestValue) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(64 * 5);
  for (auto& v : x) v = dist(rng);
  std::vector<block_nf4> blocks(5);
  quantize_row(DType::NF4, x.data(), reinterpret_cast<std::byte*>(blocks.data()), 64 * 5);
  for (size_t i = 0; i < x.size(); ++i) {
    const block_nf4& b = blocks[i / 64];
    double amax = 0;
    for (size_t k = i / 64 * 64; k < i / 64 * 64 + 64; ++k) amax = std::max(amax, std::abs(double{x[k]}));
    float d;
    std::memcpy(&d, b.d, 4);
    EXPECT_EQ(d, static_cast<float>(amax));
    const size_t e = i % 64;
    const int c = e < 32 ? b.qs[e] & 0x0F : b.qs[e - 32] >> 4;
    for (int other = 0; other < 16; ++other)
      EXPECT_LE(std::abs(x[i] / amax - kNf4Values[c]), std::abs(x[i] / amax - kNf4Values[other]) + 1e-7) << i;
  }
}

TEST(QuantTraits, TableAgreesWithLayoutAndConverters) {
  for (size_t i = 0; i < kDTypeCount; ++i) {
    const auto t = static_cast<DType>(i);
    const TypeTraits& tr = type_traits(t);
    EXPECT_EQ(tr.name, dtype_name(t));
    EXPECT_EQ(tr.block_elems, dtype_info(t).block_elems);
    EXPECT_EQ(tr.block_bytes, dtype_info(t).block_bytes);
    EXPECT_EQ(can_quantize(t), is_quantized(t) && tr.from_float != nullptr) << tr.name;
    EXPECT_EQ(can_dequantize(t), is_quantized(t) && tr.to_float != nullptr) << tr.name;
  }
  // The one float-row converter: F16 and BF16 round as core/half.h does; blocks as quantize_row.
  const std::vector<float> x = {1.0f / 3, -2.5f, 65504.0f, 1e-8f};
  std::vector<std::byte> out(16);
  from_float_row(DType::F16, x.data(), out.data(), 4);
  for (size_t i = 0; i < 4; ++i) {
    uint16_t h;
    std::memcpy(&h, out.data() + 2 * i, 2);
    EXPECT_EQ(h, f32_to_f16(x[i]));
  }
  from_float_row(DType::BF16, x.data(), out.data(), 4);
  for (size_t i = 0; i < 4; ++i) {
    uint16_t h;
    std::memcpy(&h, out.data() + 2 * i, 2);
    EXPECT_EQ(h, f32_to_bf16(x[i]));
  }
  EXPECT_THROW(from_float_row(DType::I32, x.data(), out.data(), 4), Error);
  EXPECT_THROW(from_float_row(DType::Q8_0, x.data(), out.data(), 4), Error);  // not a whole block
}

// One check of "n elements make whole blocks" serves every row converter; its message names the caller.
TEST(QuantTraits, WholeBlocksCountsBlocksAndNamesTheCaller) {
  EXPECT_EQ(whole_blocks(DType::Q4_K, 512, "x"), 2);  // 256-element super-blocks
  EXPECT_EQ(whole_blocks(DType::Q8_0, 96, "x"), 3);
  EXPECT_EQ(whole_blocks(DType::F32, 7, "x"), 7);
  EXPECT_EQ(whole_blocks(DType::Q6_K, 0, "x"), 0);
  EXPECT_THAT([] { whole_blocks(DType::Q6_K, -256, "reading"); }, throws_error("reading: -256 elements of Q6_K"));
  std::vector<float> x(64);
  std::vector<std::byte> out(1024);
  EXPECT_THAT([&] { from_float_row(DType::Q8_0, x.data(), out.data(), 40); },
              throws_error("storing floats: 40 elements of Q8_0 is not a whole number of 32-element blocks"));
  EXPECT_THAT([&] { quantize_row(DType::Q5_0, x.data(), out.data(), 1); }, throws_error("quantize_row: 1 elements of Q5_0"));
  EXPECT_THAT([&] { dequantize_row(DType::Q4_0, out.data(), x.data(), 33); },
              throws_error("dequantize_row: 33 elements of Q4_0"));
}

}  // namespace
}  // namespace baichuan::quant
