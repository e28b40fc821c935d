#include "kernels/matmul_input.h"

#include "kernels/bf16_dot.h"
#include "kernels/quant_dot.h"

namespace baichuan::kernels {

void MatmulInput::reset(const float* x, int64_t n_tokens, int64_t cols) {
  x_ = x;
  n_tokens_ = n_tokens;
  cols_ = cols;
  blocks32_.ready = blocks256_.ready = bfloat16_.ready = false;
}

size_t MatmulInput::quantized_row_bytes(DType weight_type) const { return activation_bytes(weight_type, cols_); }

const std::byte* MatmulInput::quantized(DType weight_type, ThreadPool& pool) {
  Quantized& q = activation_kind(weight_type) == ActivationKind::Blocks32 ? blocks32_ : blocks256_;
  const size_t row_bytes = quantized_row_bytes(weight_type);
  if (!q.ready) {
    // operator new aligns to 16 and block sizes are multiples of 4: every token's blocks are float-aligned.
    if (q.bytes.size() < row_bytes * static_cast<size_t>(n_tokens_)) q.bytes.resize(row_bytes * static_cast<size_t>(n_tokens_));
    pool.parallel_for(n_tokens_, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t)
        quantize_activations(weight_type, x_ + t * cols_, cols_, q.bytes.data() + static_cast<size_t>(t) * row_bytes);
    });
    q.ready = true;
  }
  return q.bytes.data();
}

const uint16_t* MatmulInput::bfloat16(ThreadPool& pool) {
  const size_t row_bytes = static_cast<size_t>(cols_) * sizeof(uint16_t);
  if (!bfloat16_.ready) {
    if (bfloat16_.bytes.size() < row_bytes * static_cast<size_t>(n_tokens_))
      bfloat16_.bytes.resize(row_bytes * static_cast<size_t>(n_tokens_));
    auto* out = reinterpret_cast<uint16_t*>(bfloat16_.bytes.data());  // operator new aligns to 16
    pool.parallel_for(n_tokens_, [&](int64_t begin, int64_t end, int) {
      round_to_bf16(x_ + begin * cols_, out + begin * cols_, (end - begin) * cols_);
    });
    bfloat16_.ready = true;
  }
  return reinterpret_cast<const uint16_t*>(bfloat16_.bytes.data());
}

}  // namespace baichuan::kernels
