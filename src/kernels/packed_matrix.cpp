#include "kernels/packed_matrix.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/cpu.h"
#include "quant/blocks.h"
#include "quant/type_traits.h"

namespace baichuan::kernels {

namespace {

using quant::block_q4_K;
using quant::block_q6_K;

// Where row r's 4 bytes of chunk c go (see packed_matrix.h).
std::byte* chunk_slot(std::byte* chunks, size_t c, int64_t r) { return chunks + 32 * c + static_cast<size_t>(r) * 4; }

// Bytes of one file block, and of its quants (after the f16 scale).
size_t block_bytes(DType t) { return dtype_info(t).block_bytes; }
size_t quant_bytes(DType t) { return block_bytes(t) - sizeof(uint16_t); }

// Bytes of one packed group of 8 rows.
size_t group_bytes(const WeightMatrix& w) {
  const auto super_blocks = static_cast<size_t>(w.cols / quant::kSuperElems);
  if (w.dtype == DType::Q4_K) return super_blocks * PackedQ4K::kBytes;
  if (w.dtype == DType::Q6_K) return super_blocks * PackedQ6K::kBytes;
  return static_cast<size_t>(kPackRows) * w.row_bytes;
}

template <typename Block>
Block load_block(const WeightMatrix& w, int64_t row, int64_t b) {
  Block block;
  std::memcpy(&block, w.row(row) + static_cast<size_t>(b) * sizeof(Block), sizeof(Block));
  return block;
}

void pack_blocks32(const WeightMatrix& w, int64_t group, std::byte* out) {
  const size_t bb = block_bytes(w.dtype), qb = quant_bytes(w.dtype);
  const int64_t blocks = w.cols / quant::kBlockElems;
  for (int64_t b = 0; b < blocks; ++b) {
    std::byte* scales = out;
    std::byte* chunks = out + kPackRows * sizeof(uint16_t);
    for (int64_t r = 0; r < kPackRows; ++r) {
      const std::byte* block = w.row(group * kPackRows + r) + static_cast<size_t>(b) * bb;
      std::memcpy(scales + r * sizeof(uint16_t), block, sizeof(uint16_t));
      const std::byte* qs = block + sizeof(uint16_t);
      for (size_t c = 0; c < qb / 4; ++c) std::memcpy(chunk_slot(chunks, c, r), qs + c * 4, 4);
    }
    out += kPackRows * bb;
  }
}

// Byte 16p + 2r + i of a pair table: the value of sub-block 2p + i of row r.
size_t pair_slot(int j, int64_t r) { return static_cast<size_t>(16 * (j / 2) + 2 * r + j % 2); }

void pack_q4_K(const WeightMatrix& w, int64_t group, std::byte* out) {
  using L = PackedQ4K;
  for (int64_t b = 0; b < w.cols / quant::kSuperElems; ++b, out += L::kBytes) {
    for (int64_t r = 0; r < kPackRows; ++r) {
      const auto blk = load_block<block_q4_K>(w, group * kPackRows + r, b);
      std::memcpy(out + L::kD + 2 * r, &blk.d, 2);
      std::memcpy(out + L::kDmin + 2 * r, &blk.dmin, 2);
      for (int j = 0; j < 8; ++j) {
        const quant::ScaleMin sm = quant::scale_min_k4(blk.scales, j);
        out[L::kScales + pair_slot(j, r)] = std::byte{sm.scale};
        out[L::kMins + pair_slot(j, r)] = std::byte{sm.min};
      }
      for (size_t c = 0; c < 32; ++c) std::memcpy(chunk_slot(out + L::kQs, c, r), blk.qs + 4 * c, 4);
    }
  }
}

// The 256 6-bit codes of a Q6_K super-block in element order (layout: dequantize.cpp).
void q6_K_codes(const block_q6_K& blk, uint8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int ql0 = blk.ql[64 * h + l], ql1 = blk.ql[64 * h + l + 32], qh = blk.qh[32 * h + l];
      uint8_t* e = q + 128 * h + l;
      e[0] = static_cast<uint8_t>((ql0 & 0x0F) | (qh & 3) << 4);
      e[32] = static_cast<uint8_t>((ql1 & 0x0F) | ((qh >> 2) & 3) << 4);
      e[64] = static_cast<uint8_t>((ql0 >> 4) | ((qh >> 4) & 3) << 4);
      e[96] = static_cast<uint8_t>((ql1 >> 4) | ((qh >> 6) & 3) << 4);
    }
}

void pack_q6_K(const WeightMatrix& w, int64_t group, std::byte* out) {
  using L = PackedQ6K;
  uint8_t q[quant::kSuperElems];
  for (int64_t b = 0; b < w.cols / quant::kSuperElems; ++b, out += L::kBytes) {
    for (int64_t r = 0; r < kPackRows; ++r) {
      const auto blk = load_block<block_q6_K>(w, group * kPackRows + r, b);
      std::memcpy(out + L::kD + 2 * r, &blk.d, 2);
      for (int j = 0; j < 16; ++j) out[L::kScales + pair_slot(j, r)] = static_cast<std::byte>(blk.scales[j]);
      q6_K_codes(blk, q);
      for (size_t c = 0; c < 32; ++c)
        for (size_t i = 0; i < 4; ++i)
          chunk_slot(out + L::kLow, c, r)[i] = static_cast<std::byte>((q[4 * c + i] & 0x0F) | (q[128 + 4 * c + i] & 0x0F) << 4);
      for (size_t c = 0; c < 16; ++c)
        for (size_t i = 0; i < 4; ++i) {
          int top = 0;
          for (size_t k = 0; k < 4; ++k) top |= (q[64 * k + 4 * c + i] >> 4) << (2 * k);
          chunk_slot(out + L::kHigh, c, r)[i] = static_cast<std::byte>(top);
        }
    }
  }
}

void pack_group(const WeightMatrix& w, int64_t group, std::byte* out) {
  switch (w.dtype) {
    case DType::Q4_K: return pack_q4_K(w, group, out);
    case DType::Q6_K: return pack_q6_K(w, group, out);
    default: return pack_blocks32(w, group, out);
  }
}

}  // namespace

bool can_pack(const WeightMatrix& w) {
  return w.layout == Layout::Rows && quant::type_traits(w.dtype).packable && w.rows % kPackRows == 0 && w.rows > 0 &&
         avx2_kernels();
}

PackedMatrix::PackedMatrix(const WeightMatrix& w, ThreadPool& pool) : source_(w) {
  if (!can_pack(w)) fail("cannot pack a ", dtype_name(w.dtype), " matrix of ", w.rows, " rows");
  const size_t packed_bytes = group_bytes(w), file_bytes = static_cast<size_t>(kPackRows) * w.row_bytes;
  const int64_t groups = w.rows / kPackRows;
  data_ = HugeBuffer(packed_bytes * static_cast<size_t>(groups));
  pool.parallel_for(groups, [&](int64_t begin, int64_t end, int) {
    for (int64_t g = begin; g < end; ++g) pack_group(w, g, data_.data() + static_cast<size_t>(g) * packed_bytes);
    // A memory-mapped source is dropped from resident memory as it is packed, so the weights are
    // never resident twice (a no-op for other memory).
    MappedFile::release_pages(w.row(begin * kPackRows), static_cast<size_t>(end - begin) * file_bytes);
  });
}

bool can_unpack(DType dtype) { return dtype == DType::Q4_0 || dtype == DType::Q8_0; }

// The inverse of pack_blocks32 for one row and a range of blocks.
void unpack_blocks(const WeightMatrix& packed, int64_t r, int64_t first_block, int64_t blocks, std::byte* out) {
  if (packed.layout != Layout::Interleaved8 || !can_unpack(packed.dtype))
    fail("unpack_blocks: not a packed Q4_0 / Q8_0 matrix (", dtype_name(packed.dtype), ")");
  const size_t bb = block_bytes(packed.dtype), qb = quant_bytes(packed.dtype);
  const int64_t slot = r % kPackRows;
  const std::byte* group = packed.row(r / kPackRows);  // row_bytes is a group's stride when packed
  for (int64_t b = first_block; b < first_block + blocks; ++b, out += bb) {
    const std::byte* in = group + static_cast<size_t>(b * kPackRows) * bb;
    std::memcpy(out, in + slot * sizeof(uint16_t), sizeof(uint16_t));
    const std::byte* chunks = in + kPackRows * sizeof(uint16_t);
    for (size_t c = 0; c < qb / 4; ++c) std::memcpy(out + sizeof(uint16_t) + c * 4, chunks + 32 * c + slot * 4, 4);
  }
}

WeightMatrix PackedMatrix::view() const {
  WeightMatrix w = source_;
  w.layout = Layout::Interleaved8;
  w.data = data_.data();
  w.row_bytes = group_bytes(source_);  // the stride of a group of 8 rows
  return w;
}

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  if (w.layout != Layout::Interleaved8 || !avx2_kernels())
    fail("packed_matmul: the matrix is not packed for the active backend");
  // The layout is the same for both: a matrix packed under one SIMD backend runs under the other.
  if (active_backend() == Backend::Avx512 && avx512::has_packed_matmul(w.dtype))
    return avx512::packed_matmul(w, activations, n_tokens, y, y_stride, group_begin, group_end);
  avx2::packed_matmul(w, activations, n_tokens, y, y_stride, group_begin, group_end);
}

}  // namespace baichuan::kernels
