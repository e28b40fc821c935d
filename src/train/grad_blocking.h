// The cache blocking of grad_kernels.h's SIMD paths, shared by grad_kernels_avx2.cpp and
// grad_kernels_avx512.cpp, which each supply a register tile:
//   struct Tile { static constexpr int64_t kRows, kCols;
//                 static void run(float* y, int64_t y_stride, const float* a, int64_t a_row, int64_t a_col,
//                                 const float* b_panel, int64_t kc); };
// run() adds a(r, k) (at a[r * a_row + k * a_col]) times b_panel [kc][kCols] to a full kRows x kCols
// tile of y, k in order, one fused multiply-add per term.
//
// As in the GEMMs of BLAS libraries: K in blocks of kGradBlockK; per block, b is packed into panels
// of kCols columns (contiguous whatever b's strides, so a transposed b costs one pass), and a panel
// (16 KB for 32 columns) stays in L1 while the strips of a block of kGradBlockRows rows of a (in L2)
// pass over it. a is read in place, a broadcast per row and k (packing it cost as much as the
// products when few columns use each value: the head's din has at most 256 rows of 125,696 k); only the last,
// partial strip is copied, padded with zero rows. Padding rows and columns are computed in lanes of
// their own: they never touch an element of y, whose chain of terms stays in order of k across
// blocks (y holds the running sum in between).
//
// Everything here is a template on the tile, a type local to each file, so the AVX2 and AVX-512
// instances are distinct functions (one ODR-merged copy could otherwise run AVX-512 code on AVX2).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "train/grad_kernels.h"

namespace baichuan::train {

inline constexpr int64_t kGradBlockK = 128;      // k per packed block
inline constexpr int64_t kGradBlockRows = 256;   // rows of a per block
inline constexpr int64_t kGradBlockCols = 1024;  // columns of b per packed block

// panels [ceil(nc / C)][kc][C] of b(k0 + k, c0 + c), zeros past nc.
template <typename Tile>
void pack_b_block(float* out, StridedMatrix b, int64_t k0, int64_t kc, int64_t c0, int64_t nc) {
  constexpr int64_t C = Tile::kCols;
  for (int64_t p = 0; p * C < nc; ++p) {
    float* panel = out + p * kc * C;
    const int64_t width = std::min(C, nc - p * C);
    if (b.col == 1) {  // rows of b: copies
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = b.data + (k0 + k) * b.row + c0 + p * C;
        std::copy_n(src, width, panel + k * C);
        std::fill(panel + k * C + width, panel + (k + 1) * C, 0.0f);
      }
    } else {  // columns of b (a transposed matrix): each read along k
      for (int64_t c = 0; c < C; ++c) {
        if (c >= width) {
          for (int64_t k = 0; k < kc; ++k) panel[k * C + c] = 0.0f;
          continue;
        }
        const float* src = b.data + k0 * b.row + (c0 + p * C + c) * b.col;
        for (int64_t k = 0; k < kc; ++k) panel[k * C + c] = src[k * b.row];
      }
    }
  }
}

// The rows of a below the last full strip, as a strip [kc][R] with zeros past `height`.
template <typename Tile>
void pack_a_edge(float* out, StridedMatrix a, int64_t r0, int64_t height, int64_t k0, int64_t kc) {
  constexpr int64_t R = Tile::kRows;
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t r = 0; r < R; ++r) out[k * R + r] = r < height ? a.at(r0 + r, k0 + k) : 0.0f;
}

template <typename Tile>
void blocked_accumulate(float* y, int64_t y_stride, StridedMatrix a, StridedMatrix b, int64_t rows, int64_t K,
                        int64_t cols) {
  constexpr int64_t R = Tile::kRows, C = Tile::kCols;
  if (rows <= 0 || cols <= 0 || K <= 0) return;
  // Per thread, sized once for the largest block: the hot loop allocates nothing.
  thread_local std::vector<float> b_pack;
  const int64_t max_panels = (std::min(cols, kGradBlockCols) + C - 1) / C;
  const size_t b_size = static_cast<size_t>(max_panels * C * std::min(K, kGradBlockK));
  if (b_pack.size() < b_size) b_pack.resize(b_size);
  alignas(64) float a_edge[R * kGradBlockK];
  alignas(64) float y_edge[R * C];  // a tile of y cut by the last row or column, padded

  for (int64_t k0 = 0; k0 < K; k0 += kGradBlockK) {
    const int64_t kc = std::min(kGradBlockK, K - k0);
    for (int64_t c0 = 0; c0 < cols; c0 += kGradBlockCols) {
      const int64_t nc = std::min(kGradBlockCols, cols - c0);
      pack_b_block<Tile>(b_pack.data(), b, k0, kc, c0, nc);
      for (int64_t r0 = 0; r0 < rows; r0 += kGradBlockRows) {
        const int64_t mr = std::min(kGradBlockRows, rows - r0), full_strips = mr / R;
        if (mr % R) pack_a_edge<Tile>(a_edge, a, r0 + full_strips * R, mr % R, k0, kc);
        for (int64_t p = 0; p * C < nc; ++p) {
          const float* panel = b_pack.data() + p * kc * C;
          const int64_t width = std::min(C, nc - p * C);
          for (int64_t s = 0; s * R < mr; ++s) {
            const int64_t height = std::min(R, mr - s * R);
            // Full strips read a in place through its strides; the edge strip its padded copy.
            const float* strip = height == R ? a.data + (r0 + s * R) * a.row + k0 * a.col : a_edge;
            const int64_t strip_row = height == R ? a.row : 1, strip_col = height == R ? a.col : R;
            float* yt = y + (r0 + s * R) * y_stride + c0 + p * C;
            if (height == R && width == C) {
              Tile::run(yt, y_stride, strip, strip_row, strip_col, panel, kc);
              continue;
            }
            std::fill_n(y_edge, R * C, 0.0f);
            for (int64_t r = 0; r < height; ++r) std::copy_n(yt + r * y_stride, width, y_edge + r * C);
            Tile::run(y_edge, C, strip, strip_row, strip_col, panel, kc);
            for (int64_t r = 0; r < height; ++r) std::copy_n(y_edge + r * C, width, yt + r * y_stride);
          }
        }
      }
    }
  }
}

}  // namespace baichuan::train
