#include "kernels/nf4_dot.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace baichuan::kernels {

int64_t nf4_blocks_in_row(int64_t n) {
  if (n < 0 || n % quant::kNf4BlockElems != 0)
    fail("NF4 row: ", n, " elements is not a whole number of ", quant::kNf4BlockElems, "-element blocks");
  return n / quant::kNf4BlockElems;
}

namespace scalar {
namespace {

// The block's 16 possible weights, as dequantization computes them.
void nf4_block_table(const std::byte* block, float* table) {
  float d;
  std::memcpy(&d, block + offsetof(quant::block_nf4, d), 4);
  for (int c = 0; c < 16; ++c) table[c] = f16_to_f32(f32_to_f16(quant::kNf4Values[c] * d));
}

}  // namespace

float nf4_dot_row(const std::byte* row, const float* x, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    float table[16];
    nf4_block_table(block, table);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    const float* xb = x + i * quant::kNf4BlockElems;
    for (int j = 0; j < 32; ++j) sum += table[qs[j] & 0x0F] * xb[j];
    for (int j = 0; j < 32; ++j) sum += table[qs[j] >> 4] * xb[j + 32];
  }
  return sum;
}

void nf4_row_to_f32(const std::byte* row, float* out, int64_t n) {
  const int64_t nb = nf4_blocks_in_row(n);
  for (int64_t i = 0; i < nb; ++i) {
    const std::byte* block = row + i * static_cast<int64_t>(sizeof(quant::block_nf4));
    float table[16];
    nf4_block_table(block, table);
    const auto* qs = reinterpret_cast<const uint8_t*>(block + offsetof(quant::block_nf4, qs));
    float* y = out + i * quant::kNf4BlockElems;
    for (int j = 0; j < 32; ++j) {
      y[j] = table[qs[j] & 0x0F];
      y[j + 32] = table[qs[j] >> 4];
    }
  }
}

}  // namespace scalar

}  // namespace baichuan::kernels
