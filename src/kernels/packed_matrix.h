// Quantized weights regrouped once at load time for integer SIMD products ("interleaved by 8").
//
// Eight consecutive rows are interleaved block by block, so one 32-byte load feeds all eight rows,
// the eight results of a block land in the eight lanes of one register (no horizontal sums), and a
// thread streams one contiguous range of memory. The numbers are the file's, only reordered (Q4_K
// also spells out its 6-bit scales as bytes).
//
// In every layout a "chunk" is 32 bytes holding, for row r = 0..7, 4 bytes at offset 4r.
//
// Q4_0 / Q8_0, for each group of 8 rows, for each block b of 32 columns (144 / 272 bytes):
//   8 f16 scales, the block's scale of rows 0..7;
//   then chunks: chunk c holds bytes 4c..4c+3 of row r's qs
//   (4 chunks for Q4_0: low nibbles are elements 4c..4c+3, high nibbles elements 16+4c..16+4c+3;
//    8 chunks for Q8_0: elements 4c..4c+3).
//
// Q4_K, for each super-block of 256 columns (PackedQ4K: 1184 bytes, 8 x 144 in the file + 32):
//   8 f16 d, 8 f16 dmin;
//   scales and mins (64 bytes each) as pairs: byte 16p + 2r + i is the 6-bit scale (min) of
//     sub-block 2p + i of row r, so widened to int16 pair p feeds one madd over 8 rows;
//   32 chunks of qs: chunk 8p + k holds bytes 32p + 4k..+3 of row r's qs (low nibbles: elements
//     64p + 4k..+3, of sub-block 2p; high nibbles: elements 64p + 32 + 4k..+3, of sub-block 2p + 1).
//
// Q6_K, for each super-block (PackedQ6K: 1680 bytes, the file's 8 x 210), codes q = 0..63:
//   8 f16 d;
//   scales (128 bytes, int8) as pairs: byte 16p + 2r + i is the scale of sub-block 2p + i of row r;
//   32 chunks of low bits: chunk c holds 4 bytes of row r whose low nibbles are the low 4 bits of
//     elements 4c..4c+3 and whose high nibbles are those of elements 128 + 4c..+3;
//   16 chunks of high bits: chunk c holds 4 bytes of row r; byte i has the top 2 bits of elements
//     4c + i, 64 + 4c + i, 128 + 4c + i, 192 + 4c + i in bits 0-1, 2-3, 4-5, 6-7.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace baichuan::kernels {

inline constexpr int64_t kPackRows = 8;

// Byte offsets within one packed K-quant super-block of 8 rows (the layouts above).
struct PackedQ4K {
  static constexpr size_t kD = 0, kDmin = 16, kScales = 32, kMins = 96, kQs = 160, kBytes = 1184;
};
struct PackedQ6K {
  static constexpr size_t kD = 0, kScales = 16, kLow = 144, kHigh = kLow + 1024, kBytes = kHigh + 512;
};

// True when `w` can be packed: Q4_0, Q8_0, Q4_K or Q6_K rows, a multiple of 8 rows, and AVX2
// kernels active (AVX2 or AVX-512; the scalar backend computes from the file layout).
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

// Whether unpack_blocks reads packed matrices of `dtype`: the types of 32-element blocks (Q4_0, Q8_0),
// whose packed groups hold the file's blocks reordered; the K-quants re-encode their scales.
bool can_unpack(DType dtype);

// Blocks [first_block, first_block + blocks) of row r of a packed matrix, in the file layout (the
// bytes the row had before packing): what training's backward reads to dequantize W.
void unpack_blocks(const WeightMatrix& packed, int64_t r, int64_t first_block, int64_t blocks, std::byte* out);

// y[t * y_stride + r] for rows r in [group_begin * 8, group_end * 8) of a packed matrix, from
// activations quantized as quantize_activations does for w.dtype (ActBlock32 or ActBlock256).
void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end);

namespace avx2 {
void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end);
}  // namespace avx2

// Q4_0, Q8_0, Q4_K and Q6_K (has_packed_matmul: every packed type); one token runs the AVX2 tile.
namespace avx512 {
bool has_packed_matmul(DType dtype);
void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end);
}  // namespace avx512

}  // namespace baichuan::kernels
