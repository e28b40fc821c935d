// Quantized weights regrouped once at load time for integer SIMD products ("interleaved by 8").
//
// Eight consecutive rows are interleaved block by block, so one 32-byte load feeds all eight rows,
// the eight results of a block land in the eight lanes of one register (no horizontal sums), and a
// thread streams one contiguous range of memory. Same bytes as the file, only reordered.
//
// For each group of 8 rows, for each block b of 32 columns (144 bytes for Q4_0, 272 for Q8_0):
//   8 f16 scales, the block's scale of rows 0..7;
//   then chunks of 32 bytes: chunk c holds, for row r = 0..7, bytes 4c..4c+3 of row r's qs
//   (4 chunks for Q4_0: low nibbles are elements 4c..4c+3, high nibbles elements 16+4c..16+4c+3;
//    8 chunks for Q8_0: elements 4c..4c+3).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace baichuan::kernels {

inline constexpr int64_t kPackRows = 8;

// True when `w` can be packed: Q4_0 or Q8_0 rows, a multiple of 8 rows, and AVX2 kernels active
// (the scalar backend computes from the file layout).
bool can_pack(const WeightMatrix& w);

// Owns a packed copy of a matrix; view() describes it to matmul.
class PackedMatrix {
 public:
  // Packs `w` (can_pack(w) must hold), threads splitting the row groups. Pages of a memory-mapped
  // `w` are released as they are packed (see MappedFile::release_pages).
  PackedMatrix(const WeightMatrix& w, ThreadPool& pool);
  WeightMatrix view() const;
  size_t bytes() const { return data_.size(); }

 private:
  WeightMatrix source_;
  HugeBuffer data_;
};

// y[t * y_stride + r] for rows r in [group_begin * 8, group_end * 8) of a packed matrix, from
// activations quantized as ActBlock32 (one row of cols / 32 blocks per token).
void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end);

namespace avx2 {
void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end);
}  // namespace avx2

}  // namespace baichuan::kernels
