// Quantize / dequantize helpers shared by the block-format tests: each also checks that an odd
// address (as inside a memory-mapped file) gives the same bytes or floats as an aligned one.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace baichuan::quant::testing {

inline std::vector<float> decode(DType dtype, const std::vector<std::byte>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n)), shifted(static_cast<size_t>(n));
  dequantize_row(dtype, bytes.data(), out.data(), n);
  std::vector<std::byte> odd(bytes.size() + 1);
  std::memcpy(odd.data() + 1, bytes.data(), bytes.size());
  dequantize_row(dtype, odd.data() + 1, shifted.data(), n);
  EXPECT_EQ(std::memcmp(out.data(), shifted.data(), out.size() * sizeof(float)), 0) << dtype_name(dtype);
  return out;
}

inline std::vector<std::byte> encode(DType dtype, const std::vector<float>& x) {
  const auto info = dtype_info(dtype);
  std::vector<std::byte> out(x.size() / info.block_elems * info.block_bytes);
  quantize_row(dtype, x.data(), out.data(), static_cast<int64_t>(x.size()));
  std::vector<std::byte> odd(out.size() + 1);
  quantize_row(dtype, x.data(), odd.data() + 1, static_cast<int64_t>(x.size()));
  EXPECT_EQ(std::memcmp(out.data(), odd.data() + 1, out.size()), 0) << dtype_name(dtype);
  return out;
}

}  // namespace baichuan::quant::testing
