#include "kernels/bf16_dot.h"

#include <cstring>

#include "core/half.h"

namespace baichuan::kernels {

void round_to_bf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

namespace scalar {

void bf16_tile(const std::byte* w, size_t w_row_bytes, int nr, const uint16_t* x, int nt, int64_t n, float* out,
               int64_t out_stride) {
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      const std::byte* row = w + static_cast<size_t>(r) * w_row_bytes;
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t wi;
        std::memcpy(&wi, row + 2 * i, 2);
        sum += bf16_to_f32(wi) * bf16_to_f32(x[t * n + i]);
      }
      out[t * out_stride + r] = sum;
    }
}

}  // namespace scalar

}  // namespace baichuan::kernels
