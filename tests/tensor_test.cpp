#include <gtest/gtest.h>

#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"

using namespace baichuan;

TEST(Half, F16RoundTripsEveryHalfValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (f != f) continue;  // NaN payloads need not survive
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                  // rounds up to infinity
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02);      // tie -> even (up)
  EXPECT_EQ(f32_to_f16(5.9604645e-8f), 0x0001);             // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.9802322e-8f), 0x0000);             // half of it: tie -> even zero
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // exactly halfway between 0x3f80 and 0x3f81 -> even
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // halfway between 0x3f81 and 0x3f82 -> even
}

TEST(Tensor, BytesForRejectsPartialBlocks) {
  EXPECT_EQ(bytes_for(DType::Q8_0, 64, "t"), 68u);
  EXPECT_THROW(bytes_for(DType::Q8_0, 33, "t"), Error);
  EXPECT_THROW(checked_numel({-1, 3}, "t"), Error);
  EXPECT_THROW(checked_numel({1LL << 40, 1LL << 40}, "t"), Error);
}
