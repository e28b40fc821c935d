#include "kernels/matmul.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
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
  WeightMatrix w = *this;
  w.data = row(begin);
  w.rows = count;
  return w;
}

namespace {

constexpr int64_t kRowBlock = 8;  // rows converted to float together, reused across every token
constexpr int64_t kDirectTokens = 1;  // up to this many tokens, dot the stored rows directly

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool) {
  if (n_tokens <= kDirectTokens && !is_quantized(w.dtype)) {  // decoding: one pass, converted on the fly
    pool.parallel_for(w.rows, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t r = begin; r < end; ++r) y[t * y_stride + r] = dot_row(w.dtype, w.row(r), x + t * w.cols, w.cols);
    }, kRowBlock);
    return;
  }
  pool.parallel_for(
      w.rows,
      [&](int64_t begin, int64_t end, int) {
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
                       static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t)), w.cols,
                       y + t * y_stride + r0 + r, y_stride);
        }
      },
      kRowBlock);
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum = 0;
      for (int64_t i = 0; i < w.cols; ++i)
        sum += static_cast<double>(load_float(w.dtype, w.row(r), static_cast<size_t>(i))) * x[t * w.cols + i];
      y[t * y_stride + r] = static_cast<float>(sum);
    }
}

}  // namespace baichuan::kernels
