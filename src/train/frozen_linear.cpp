#include "train/frozen_linear.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/matmul_input.h"
#include "kernels/packed_matrix.h"
#include "kernels/vec.h"
#include "quant/type_traits.h"
#include "train/grad_kernels.h"

namespace baichuan::train {

namespace {

// The dequantized tile of the backward: kStoredTileRows rows of W (the K of accumulate_products,
// which blocks K by kGradBlockK itself) by kStoredTileCols columns (a multiple of every block size): 512 KiB.
constexpr int64_t kStoredTileRows = 256, kStoredTileCols = 512;

// Column boundaries every part's blocks agree on (the block sizes are powers of two).
int64_t column_grain(const StoredMatrix& m) {
  int64_t grain = 16;  // as matmul_backward's, for the float parts
  for (const kernels::WeightMatrix& p : m.parts)
    grain = std::max(grain, static_cast<int64_t>(dtype_info(p.dtype).block_elems));
  return grain;
}

// Columns [c0, c0 + n) of row r of `w` as floats; c0 is a multiple of the type's block size.
void stored_row_columns(const kernels::WeightMatrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  const DTypeInfo info = dtype_info(w.dtype);
  const auto first_block = static_cast<int64_t>(static_cast<size_t>(c0) / info.block_elems);
  if (w.layout == kernels::Layout::Interleaved8) {
    thread_local std::vector<std::byte> blocks;
    const auto count = static_cast<int64_t>((static_cast<size_t>(n) + info.block_elems - 1) / info.block_elems);
    blocks.resize(static_cast<size_t>(count) * info.block_bytes);
    kernels::unpack_blocks(w, r, first_block, count, blocks.data());
    return kernels::row_to_f32(w.dtype, blocks.data(), out, n);
  }
  kernels::row_to_f32(w.dtype, w.row(r) + static_cast<size_t>(first_block) * info.block_bytes, out, n);
}

}  // namespace

bool keeps_stored_type(DType type) {
  return is_quantized(type) && quant::type_traits(type).dot != quant::DotActivations::None;
}

StoredWeights::StoredWeights(HugeBuffer bytes, std::vector<StoredMatrix> matrices, int64_t layers)
    : bytes_(std::move(bytes)), matrices_(std::move(matrices)), layers_(layers) {
  if (matrices_.size() != static_cast<size_t>(layers_) * std::size(kLoraTargets))
    fail("stored layer matrices: ", matrices_.size(), " matrices for ", layers_, " layers");
}

const StoredMatrix& StoredWeights::get(int64_t layer, LoraTarget t) const {
  return matrices_[static_cast<size_t>(layer) * std::size(kLoraTargets) + static_cast<size_t>(t)];
}

void StoredWeights::pack(ThreadPool& pool) {
  auto pack_part = [&](kernels::WeightMatrix& part) {
    if (!kernels::can_pack(part) || !kernels::can_unpack(part.dtype)) return;
    const kernels::PackedMatrix packed(part, pool);
    // Every part lies in bytes_, and a packed Q4_0 / Q8_0 matrix has the rows' size: copy it back.
    std::byte* at = bytes_.data() + (part.data - bytes_.data());
    if (packed.bytes() != static_cast<size_t>(part.rows) * part.row_bytes)
      fail("packing a ", dtype_name(part.dtype), " matrix changed its size");
    std::memcpy(at, packed.view().data, packed.bytes());
    part = packed.view();
    part.data = at;
  };
  for (StoredMatrix& m : matrices_)
    for (kernels::WeightMatrix& part : m.parts) pack_part(part);
  if (head)
    for (kernels::WeightMatrix& part : head->parts) pack_part(part);
}

void stored_matrix_forward(float* out, const float* in, const StoredMatrix& m, int64_t N, ThreadPool& pool) {
  std::array<kernels::MatmulOutput, 3> outputs;
  if (m.parts.size() > outputs.size()) fail("stored matrix: more than ", outputs.size(), " row blocks");
  int64_t row = 0;
  for (size_t i = 0; i < m.parts.size(); ++i) {
    outputs[i] = {m.parts[i], out + row, m.out};
    row += m.parts[i].rows;
  }
  kernels::MatmulInput x(in, N, m.in);
  kernels::matmul(std::span<const kernels::MatmulOutput>(outputs.data(), m.parts.size()), x, pool);
}

// Threads split din by columns (as matmul_backward does); each walks its columns a tile at a time and,
// within a tile, the rows of W in order, so every element sums its terms in order of the output row.
void stored_matrix_backward(float* din, const float* dout, const StoredMatrix& m, int64_t N, ThreadPool& pool) {
  const int64_t I = m.in, O = m.out;
  pool.parallel_for(I, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(kStoredTileRows * kStoredTileCols));
    for (int64_t c0 = begin; c0 < end; c0 += kStoredTileCols) {
      const int64_t cols = std::min(kStoredTileCols, end - c0);
      int64_t first_row = 0;  // of the part, in W
      for (const kernels::WeightMatrix& part : m.parts) {
        for (int64_t r0 = 0; r0 < part.rows; r0 += kStoredTileRows) {
          const int64_t rows = std::min(kStoredTileRows, part.rows - r0);
          for (int64_t r = 0; r < rows; ++r) stored_row_columns(part, r0 + r, c0, cols, tile.data() + r * cols);
          accumulate_products(din + c0, I, dout + first_row + r0, O, 1, N, tile.data(), cols, rows, cols);
        }
        first_row += part.rows;
      }
    }
  }, column_grain(m));
}

void stored_embedding_forward(float* out, const int32_t* ids, const StoredMatrix& table, int64_t N) {
  const kernels::WeightMatrix& w = table.parts.at(0);
  for (int64_t n = 0; n < N; ++n) kernels::row_to_f32(w.dtype, w.row(ids[n]), out + n * table.in, table.in);
}

namespace {

// x[n, v] *= inv_norm[v] over N rows of V.
void scale_head_columns(float* x, const std::vector<float>& inv_norm, int64_t N, ThreadPool& pool) {
  const auto V = static_cast<int64_t>(inv_norm.size());
  pool.parallel_for(N * V, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) x[i] *= inv_norm[static_cast<size_t>(i % V)];
  }, 4096);
}

}  // namespace

void stored_head_forward(float* logits, const float* in, const StoredWeights& w, int64_t N, ThreadPool& pool) {
  stored_matrix_forward(logits, in, *w.head, N, pool);
  scale_head_columns(logits, w.head_inv_norm, N, pool);
}

void stored_head_backward(float* din, float* dlogits, const StoredWeights& w, int64_t N, ThreadPool& pool) {
  scale_head_columns(dlogits, w.head_inv_norm, N, pool);
  stored_matrix_backward(din, dlogits, *w.head, N, pool);
}

void stored_matrix_backward_reference(float* din, const float* dout, const StoredMatrix& m, int64_t N) {
  std::vector<double> sums(static_cast<size_t>(N * m.in), 0.0);
  std::vector<float> row(static_cast<size_t>(m.in));
  int64_t o = 0;
  for (const kernels::WeightMatrix& part : m.parts)
    for (int64_t r = 0; r < part.rows; ++r, ++o) {
      stored_row_columns(part, r, 0, m.in, row.data());
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < m.in; ++i)
          sums[static_cast<size_t>(n * m.in + i)] +=
              static_cast<double>(dout[n * m.out + o]) * static_cast<double>(row[static_cast<size_t>(i)]);
    }
  for (size_t i = 0; i < sums.size(); ++i) din[i] = static_cast<float>(static_cast<double>(din[i]) + sums[i]);
}

}  // namespace baichuan::train
