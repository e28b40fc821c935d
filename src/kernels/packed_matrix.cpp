#include "kernels/packed_matrix.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/cpu.h"
#include "quant/blocks.h"

namespace baichuan::kernels {

namespace {

// Bytes of one file block, and of its quants (after the f16 scale).
size_t block_bytes(DType t) { return dtype_info(t).block_bytes; }
size_t quant_bytes(DType t) { return block_bytes(t) - sizeof(uint16_t); }

void pack_group(const WeightMatrix& w, int64_t group, std::byte* out) {
  const size_t bb = block_bytes(w.dtype), qb = quant_bytes(w.dtype);
  const int64_t blocks = w.cols / quant::kBlockElems;
  for (int64_t b = 0; b < blocks; ++b) {
    std::byte* scales = out;
    std::byte* chunks = out + kPackRows * sizeof(uint16_t);
    for (int64_t r = 0; r < kPackRows; ++r) {
      const std::byte* block = w.row(group * kPackRows + r) + static_cast<size_t>(b) * bb;
      std::memcpy(scales + r * sizeof(uint16_t), block, sizeof(uint16_t));
      const std::byte* qs = block + sizeof(uint16_t);
      for (size_t c = 0; c < qb / 4; ++c) std::memcpy(chunks + c * 32 + static_cast<size_t>(r) * 4, qs + c * 4, 4);
    }
    out += kPackRows * bb;
  }
}

}  // namespace

bool can_pack(const WeightMatrix& w) {
  return w.layout == Layout::Rows && (w.dtype == DType::Q4_0 || w.dtype == DType::Q8_0) && w.rows % kPackRows == 0 &&
         w.rows > 0 && active_backend() == Backend::Avx2;
}

PackedMatrix::PackedMatrix(const WeightMatrix& w, ThreadPool& pool) : source_(w) {
  if (!can_pack(w)) fail("cannot pack a ", dtype_name(w.dtype), " matrix of ", w.rows, " rows");
  const size_t group_bytes = static_cast<size_t>(kPackRows) * w.row_bytes;
  const int64_t groups = w.rows / kPackRows;
  data_ = HugeBuffer(group_bytes * static_cast<size_t>(groups));
  pool.parallel_for(groups, [&](int64_t begin, int64_t end, int) {
    for (int64_t g = begin; g < end; ++g) pack_group(w, g, data_.data() + static_cast<size_t>(g) * group_bytes);
    // A memory-mapped source is dropped from resident memory as it is packed, so the weights are
    // never resident twice (a no-op for other memory).
    MappedFile::release_pages(w.row(begin * kPackRows), static_cast<size_t>(end - begin) * group_bytes);
  });
}

WeightMatrix PackedMatrix::view() const {
  WeightMatrix w = source_;
  w.layout = Layout::Interleaved8;
  w.data = data_.data();
  w.row_bytes = static_cast<size_t>(kPackRows) * source_.row_bytes;
  return w;
}

void packed_matmul(const WeightMatrix& w, const std::byte* activations, int64_t n_tokens, float* y, int64_t y_stride,
                   int64_t group_begin, int64_t group_end) {
  if (w.layout != Layout::Interleaved8 || active_backend() != Backend::Avx2)
    fail("packed_matmul: the matrix is not packed for the active backend");
  avx2::packed_matmul(w, activations, n_tokens, y, y_stride, group_begin, group_end);
}

}  // namespace baichuan::kernels
