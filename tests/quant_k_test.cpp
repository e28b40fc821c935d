// K-quant quantization (Q4_K, Q5_K, Q6_K): hand-packed blocks whose values lie on their own grid
// come back byte for byte (the packing is spelled out here, independently of src/quant), random
// rows round-trip within a measured error, edge cases and bad lengths are handled.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "error_matchers.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant_codec.h"
#include "random_inputs.h"

namespace baichuan::quant {
namespace quant_k_test {  // named, not anonymous: the tests compile as a unity build

const DType kKQuants[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K};

template <typename Block>
std::vector<std::byte> bytes_of(const Block& b) {
  std::vector<std::byte> out(sizeof(Block));
  std::memcpy(out.data(), &b, sizeof(Block));
  return out;
}

using baichuan::testing::throws_error;
using testing::decode;
using testing::encode;
using baichuan::testing::random_floats;

void expect_same_bytes(const std::vector<std::byte>& got, const std::vector<std::byte>& want,
                       DType dtype) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(static_cast<int>(got[i]), static_cast<int>(want[i]))
        << dtype_name(dtype) << " byte " << i;
}

// ---------------------------------------------------------------- hand-made blocks

// Q4_K / Q5_K sub-block scales and mins; sub-block 0 has the largest scale (63) and sub-block 1
// the largest min (63), so the quantizer's d and dmin are the ones below. Sub-block 6 is constant
// (scale 0) and sub-block 2 has no offset (min 0).
constexpr int kScales[8] = {63, 1, 17, 32, 5, 48, 0, 40};
constexpr int kMins[8] = {2, 63, 0, 21, 33, 7, 9, 16};
// Packed by hand: byte j (j < 4) = scale j | (scale j+4 >> 4) << 6; byte j + 4 = min j |
// (min j+4 >> 4) << 6; byte j + 8 = (scale j+4 & 15) | (min j+4 & 15) << 4.
constexpr uint8_t kPackedScales[12] = {0x3F, 0xC1, 0x11, 0xA0, 0x82, 0x3F,
                                       0x00, 0x55, 0x15, 0x70, 0x90, 0x08};
constexpr uint16_t kQuarter = 0x3400;  // f16 0.25
constexpr uint16_t kHalf = 0x3800;     // f16 0.5
constexpr uint16_t kEighth = 0x3000;   // f16 0.125

TEST(QuantK, PackedScalesMatchScaleMinK4) {
  for (int j = 0; j < 8; ++j) {
    const ScaleMin sm = scale_min_k4(kPackedScales, j);
    EXPECT_EQ(sm.scale, kScales[j]) << j;
    EXPECT_EQ(sm.min, kMins[j]) << j;
  }
}

// Level of element l of sub-block s: every sub-block with a scale holds both 0 and qmax, so its
// own grid is the one the quantizer finds; a constant sub-block gets level 0.
int affine_level(int s, int l, int qmax) {
  if (kScales[s] == 0) return 0;
  if (l == 0) return 0;
  if (l == 1) return qmax;
  return (l * 7 + s * 3) % (qmax + 1);
}

TEST(QuantK, Q4_KHandMadeBlockRoundTripsByteForByte) {
  block_q4_K b{};
  b.d = kQuarter;
  b.dmin = kHalf;
  std::memcpy(b.scales, kPackedScales, 12);
  // Element l of sub-block s sits in byte 32 * (s / 2) + l: the low nibble for even s.
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * (s / 2) + l] |= static_cast<uint8_t>(affine_level(s, l, 15) << (s % 2 ? 4 : 0));
  const auto bytes = bytes_of(b);
  const auto x = decode(DType::Q4_K, bytes, 256);
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l)
      ASSERT_EQ(x[32 * s + l], 0.25f * kScales[s] * affine_level(s, l, 15) - 0.5f * kMins[s]);
  expect_same_bytes(encode(DType::Q4_K, x), bytes, DType::Q4_K);
}

TEST(QuantK, Q5_KHandMadeBlockRoundTripsByteForByte) {
  block_q5_K b{};
  b.d = kQuarter;
  b.dmin = kHalf;
  std::memcpy(b.scales, kPackedScales, 12);
  // Low 4 bits as Q4_K; bit 4 of element l of sub-block s is bit s of qh[l].
  for (int s = 0; s < 8; ++s) {
    for (int l = 0; l < 32; ++l) {
      const int q = affine_level(s, l, 31);
      b.qs[32 * (s / 2) + l] |= static_cast<uint8_t>((q & 15) << (s % 2 ? 4 : 0));
      b.qh[l] |= static_cast<uint8_t>((q >> 4) << s);
    }
  }
  const auto bytes = bytes_of(b);
  const auto x = decode(DType::Q5_K, bytes, 256);
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l)
      ASSERT_EQ(x[32 * s + l], 0.25f * kScales[s] * affine_level(s, l, 31) - 0.5f * kMins[s]);
  expect_same_bytes(encode(DType::Q5_K, x), bytes, DType::Q5_K);
}

// Q6_K: sub-block 0 has scale -128, the end the quantizer maps the largest scale to, so d is
// found exactly. Every sub-block with a scale holds level -32 (its element of largest magnitude);
// the all-zero sub-block 4 is stored with level 0 (byte value 32).
constexpr int kScales6[16] = {-128, 1, 7, -3, 0, 127, 64, -90, 12, -1, 33, 100, -128, 5, -7, 2};

int symmetric_level(int s, int l) {
  if (kScales6[s] == 0) return 0;
  if (l == 0) return -32;
  return (l * 11 + s * 5) % 64 - 32;
}

TEST(QuantK, Q6_KHandMadeBlockRoundTripsByteForByte) {
  block_q6_K b{};
  b.d = kEighth;
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(kScales6[s]);
  // Element e: half h = e / 128, r = e % 128, group k = r / 32, l = r % 32. Low 4 bits in the
  // low (k < 2) or high (k >= 2) nibble of ql[64h + l + 32 (k % 2)]; high 2 bits at bit 2k of
  // qh[32h + l]; the stored value is level + 32.
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const int q = symmetric_level(e / 16, e % 16) + 32;
    b.ql[64 * h + l + 32 * (k % 2)] |= static_cast<uint8_t>((q & 15) << (k < 2 ? 0 : 4));
    b.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
  }
  const auto bytes = bytes_of(b);
  const auto x = decode(DType::Q6_K, bytes, 256);
  for (int e = 0; e < 256; ++e)
    ASSERT_EQ(x[e], 0.125f * kScales6[e / 16] * symmetric_level(e / 16, e % 16)) << e;
  expect_same_bytes(encode(DType::Q6_K, x), bytes, DType::Q6_K);
}

// ---------------------------------------------------------------- round trips

double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, sq = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
    sq += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / sq);
}

// Bounds on RMSE / RMS, a modest margin over what this quantizer measures on N(0, sigma) rows of
// 256 to 4352 elements (worst seen: Q4_K 0.0747, Q5_K 0.0372, Q6_K 0.0205). A packing mistake
// (wrong nibble, scale or bit) lands far above them.
double rmse_bound(DType dtype) {
  switch (dtype) {
    case DType::Q4_K: return 0.082;
    case DType::Q5_K: return 0.041;
    case DType::Q6_K: return 0.022;
    default: return 0;
  }
}

TEST(QuantKRoundTrip, RandomNormalRowsWithinMeasuredError) {
  for (DType dtype : kKQuants) {
    for (size_t n : {size_t{256}, size_t{512}, size_t{4096 + 256}}) {
      const auto seed = static_cast<uint32_t>(n) * 31 + static_cast<uint32_t>(dtype);
      const auto x = random_floats(n, seed, 1.0f);
      const auto y = decode(dtype, encode(dtype, x), static_cast<int64_t>(n));
      const double rel = relative_rmse(x, y);
      EXPECT_LT(rel, rmse_bound(dtype)) << dtype_name(dtype) << " n=" << n;
      EXPECT_GT(rel, 0.0) << dtype_name(dtype) << " n=" << n;
    }
  }
}

// On a long row the noise is small enough to see the scale search pay off: plain min/max (or
// largest-magnitude) grids without the search measure Q4_K 0.0784, Q5_K 0.0379, Q6_K 0.0186 here;
// this quantizer (and ggml's reference, which writes the same bytes on this row) 0.0718, 0.0360,
// 0.01775.
TEST(QuantKRoundTrip, ScaleSearchBeatsPlainGrids) {
  const struct {
    DType dtype;
    double bound;
  } cases[] = {{DType::Q4_K, 0.0745}, {DType::Q5_K, 0.0372}, {DType::Q6_K, 0.0182}};
  const auto x = random_floats(256 * 64, 11, 1.0f);
  for (const auto& c : cases) {
    const auto y = decode(c.dtype, encode(c.dtype, x), static_cast<int64_t>(x.size()));
    EXPECT_LT(relative_rmse(x, y), c.bound) << dtype_name(c.dtype);
  }
}

// The error scales with the data: a scaled, shifted row keeps the same relative error (the
// affine formats absorb the shift into their mins, relative to the data's spread).
TEST(QuantKRoundTrip, ScaledAndShiftedRows) {
  for (DType dtype : kKQuants) {
    for (float sigma : {1e-3f, 40.0f}) {
      const auto x = random_floats(1024, 5 + static_cast<uint32_t>(dtype), sigma);
      const auto y = decode(dtype, encode(dtype, x), 1024);
      EXPECT_LT(relative_rmse(x, y), rmse_bound(dtype)) << dtype_name(dtype) << " sigma=" << sigma;
    }
  }
  for (DType dtype : {DType::Q4_K, DType::Q5_K}) {
    auto x = random_floats(1024, 9, 1.0f);
    for (auto& v : x) v -= 2.0f;  // all below zero mostly: the min does the work
    const auto y = decode(dtype, encode(dtype, x), 1024);
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) err += (y[i] - x[i]) * (y[i] - x[i]);
    EXPECT_LT(std::sqrt(err / 1024), rmse_bound(dtype) * 1.5) << dtype_name(dtype);
  }
}

TEST(QuantKRoundTrip, ZerosAndConstants) {
  for (DType dtype : kKQuants) {
    const auto zeros = decode(dtype, encode(dtype, std::vector<float>(512, 0.0f)), 512);
    for (float v : zeros) EXPECT_EQ(v, 0.0f) << dtype_name(dtype);
    for (float c : {-2.5f, 0.75f, 300.0f}) {
      const auto y = decode(dtype, encode(dtype, std::vector<float>(256, c)), 256);
      for (float v : y) EXPECT_NEAR(v, c, std::fabs(c) * 2e-3f) << dtype_name(dtype) << " c=" << c;
    }
  }
}

// NaN and infinity give unspecified bytes but no undefined behaviour (the sanitizer builds check
// the float-to-int conversions), and the other super-blocks of the row are unaffected.
TEST(QuantKRoundTrip, NonFiniteInputsAreHandled) {
  for (DType dtype : kKQuants) {
    auto x = random_floats(768, 3, 1.0f);
    const std::vector<float> first(x.begin(), x.begin() + 256);
    x[300] = std::nanf("");
    x[600] = INFINITY;
    x[601] = -INFINITY;
    const auto y = decode(dtype, encode(dtype, x), 768);
    const auto alone = decode(dtype, encode(dtype, first), 256);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], alone[i]) << dtype_name(dtype);
    const auto all_nan = encode(dtype, std::vector<float>(256, std::nanf("")));
    EXPECT_EQ(all_nan.size(), dtype_info(dtype).block_bytes);
  }
}

// ---------------------------------------------------------------- errors

TEST(QuantKErrors, LengthsMustBeWholeSuperBlocks) {
  std::vector<std::byte> buf(4096);
  std::vector<float> f(1024, 0.0f);
  for (DType dtype : kKQuants) {
    EXPECT_TRUE(can_quantize(dtype)) << dtype_name(dtype);
    for (int64_t n : {int64_t{32}, int64_t{128}, int64_t{300}, int64_t{-256}}) {
      EXPECT_THAT([&] { quantize_row(dtype, f.data(), buf.data(), n); }, throws_error(dtype_name(dtype), "256"))
          << dtype_name(dtype) << " n=" << n;
    }
    EXPECT_NO_THROW(quantize_row(dtype, f.data(), buf.data(), 0));
    EXPECT_NO_THROW(quantize_row(dtype, f.data(), buf.data(), 1024));
  }
}

}  // namespace
}  // namespace baichuan::quant
