#include "kernels/matmul.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "kernels/bf16_dot.h"
#include "kernels/matmul_precision.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant_dot.h"
#include "kernels/vec.h"

namespace baichuan::kernels {

WeightMatrix WeightMatrix::from(const Tensor& t) {
  if (t.shape.size() != 2) fail("tensor '", t.name, "' is not a matrix: shape ", t.shape_str());
  WeightMatrix w;
  w.dtype = t.dtype;
  w.data = t.data;
  w.rows = t.shape[0];
  w.cols = t.shape[1];
  w.row_bytes = bytes_for(t.dtype, w.cols, t.name);
  return w;
}

WeightMatrix WeightMatrix::slice_rows(int64_t begin, int64_t count) const {
  if (layout != Layout::Rows) fail("slice_rows: a packed matrix cannot be sliced");
  WeightMatrix w = *this;
  w.data = row(begin);
  w.rows = count;
  return w;
}

namespace {

constexpr int64_t kRowBlock = 8;  // the unit of work: rows converted or packed together
constexpr int64_t kDirectTokens = 1;  // up to this many tokens, dot the stored float rows directly
constexpr size_t kMaxOutputs = 8;
static_assert(kRowBlock == kPackRows, "a packed group is one unit of work");

// Block types with an integer dot product (quant_dot.h) multiply 8-bit activations; the others
// (float types, and NF4, whose exact weights are floats: nf4_dot.h) multiply the float activations.
bool takes_quantized_activations(DType t) { return quant::type_traits(t).dot != quant::DotActivations::None; }

// F32/F16/BF16/NF4 rows [begin, end).
void float_rows(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t begin,
                int64_t end) {
  if (n_tokens <= kDirectTokens) {  // decoding: one pass, converted on the fly
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t r = begin; r < end; ++r) y[t * y_stride + r] = dot_row(w.dtype, w.row(r), x + t * w.cols, w.cols);
    return;
  }
  thread_local std::vector<float> rows_f32;
  rows_f32.resize(static_cast<size_t>(kRowBlock * w.cols));
  for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
    int64_t nr = std::min(kRowBlock, end - r0);
    const float* block = rows_f32.data();
    // F32 rows are used in place when aligned (zero-copy readers may hand out odd addresses).
    if (w.dtype == DType::F32 && reinterpret_cast<uintptr_t>(w.row(r0)) % alignof(float) == 0) {
      block = reinterpret_cast<const float*>(w.row(r0));
    } else {
      for (int64_t r = 0; r < nr; ++r) row_to_f32(w.dtype, w.row(r0 + r), rows_f32.data() + r * w.cols, w.cols);
    }
    for (int64_t t = 0; t < n_tokens; t += kTileTokens)
      for (int64_t r = 0; r < nr; r += kTileRows)
        dot_tile(block + r * w.cols, static_cast<int>(std::min<int64_t>(kTileRows, nr - r)), x + t * w.cols,
                 static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t)), w.cols, y + t * y_stride + r0 + r,
                 y_stride);
  }
}

// BF16 rows [begin, end) of a prompt at the medium precision: activations rounded to bfloat16
// (matmul_precision.h), the stored rows used in place.
void bf16_rows(const WeightMatrix& w, const uint16_t* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t begin,
               int64_t end) {
  for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, end - r0);
    for (int64_t t = 0; t < n_tokens; t += kTileTokens)
      for (int64_t r = 0; r < nr; r += kTileRows)
        avx512::bf16_tile(w.row(r0 + r), w.row_bytes, static_cast<int>(std::min<int64_t>(kTileRows, nr - r)),
                          x + t * w.cols, static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t)), w.cols,
                          y + t * y_stride + r0 + r, y_stride);
  }
}

// Quantized rows [begin, end) in the file layout: each row stays in L1 while every token passes.
void quantized_rows(const WeightMatrix& w, const std::byte* xq, size_t xq_row_bytes, int64_t n_tokens, float* y,
                    int64_t y_stride, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r)
    for (int64_t t = 0; t < n_tokens; ++t)
      y[t * y_stride + r] = dot_quantized(w.dtype, w.row(r), xq + static_cast<size_t>(t) * xq_row_bytes, w.cols);
}

}  // namespace

void matmul(std::span<const MatmulOutput> outputs, MatmulInput& x, ThreadPool& pool) {
  if (outputs.size() > kMaxOutputs) fail("matmul: more than ", kMaxOutputs, " products of one input");
  std::array<const std::byte*, kMaxOutputs> quantized{};
  std::array<size_t, kMaxOutputs> quantized_row{};
  std::array<const uint16_t*, kMaxOutputs> bfloat16{};
  std::array<int64_t, kMaxOutputs + 1> first_unit{};  // units are blocks of kRowBlock rows
  for (size_t i = 0; i < outputs.size(); ++i) {
    const WeightMatrix& w = outputs[i].w;
    if (w.cols != x.cols()) fail("matmul: a matrix of ", w.cols, " columns applied to rows of ", x.cols());
    if (takes_quantized_activations(w.dtype)) {
      quantized[i] = x.quantized(w.dtype, pool);
      quantized_row[i] = x.quantized_row_bytes(w.dtype);
    } else if (w.dtype == DType::BF16 && w.layout == Layout::Rows && x.tokens() > kDirectTokens && bf16_products()) {
      bfloat16[i] = x.bfloat16(pool);
    }
    first_unit[i + 1] = first_unit[i] + (w.rows + kRowBlock - 1) / kRowBlock;
  }
  const int64_t n_tokens = x.tokens();
  pool.parallel_for(first_unit[outputs.size()], [&](int64_t begin, int64_t end, int) {
    for (size_t i = 0; i < outputs.size(); ++i) {
      const int64_t lo = std::max(begin, first_unit[i]), hi = std::min(end, first_unit[i + 1]);
      if (lo >= hi) continue;
      const auto& [w, y, y_stride] = outputs[i];
      const int64_t row_begin = (lo - first_unit[i]) * kRowBlock, row_end = std::min(w.rows, (hi - first_unit[i]) * kRowBlock);
      if (w.layout == Layout::Interleaved8)
        packed_matmul(w, quantized[i], n_tokens, y, y_stride, row_begin / kPackRows, row_end / kPackRows);
      else if (takes_quantized_activations(w.dtype))
        quantized_rows(w, quantized[i], quantized_row[i], n_tokens, y, y_stride, row_begin, row_end);
      else if (bfloat16[i] != nullptr)
        bf16_rows(w, bfloat16[i], n_tokens, y, y_stride, row_begin, row_end);
      else
        float_rows(w, x.floats(), n_tokens, y, y_stride, row_begin, row_end);
    }
  });
}

void matmul(const WeightMatrix& w, MatmulInput& x, float* y, int64_t y_stride, ThreadPool& pool) {
  const MatmulOutput output{w, y, y_stride};
  matmul(std::span<const MatmulOutput>(&output, 1), x, pool);
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool) {
  MatmulInput input(x, n_tokens, w.cols);
  matmul(w, input, y, y_stride, pool);
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride) {
  if (w.layout != Layout::Rows) fail("matmul_reference: needs the file layout");
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    row_to_f32(w.dtype, w.row(r), row.data(), w.cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double sum = 0;
      for (int64_t i = 0; i < w.cols; ++i) sum += static_cast<double>(row[static_cast<size_t>(i)]) * x[t * w.cols + i];
      y[t * y_stride + r] = static_cast<float>(sum);
    }
  }
}

}  // namespace baichuan::kernels
