// The frozen base weight of one linear layer in LoRA training, and the only two products training
// needs from it: the forward out = in . W^T and the backward to the input din += dout . W; never a
// weight gradient (skipping that product is where LoRA saves its time). Today W is float rows of the
// TrainModel; a quantized base (QLoRA: Q4_0/Q8_0 rows and the transposed product through them) is to
// become a second kind of FrozenLinear behind these same two functions.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "train/ops.h"

namespace baichuan::train {

template <typename T>
struct FrozenLinear {
  const T* w = nullptr;  // [out, in], row-major
  int64_t in = 0, out = 0;
};

// out [N, w.out] = in [N, w.in] . W^T (overwrites out).
template <typename T>
void frozen_linear_forward(T* out, const T* in, const FrozenLinear<T>& w, int64_t N, ThreadPool& pool) {
  matmul_forward(out, in, w.w, N, w.in, w.out, pool);
}

// din [N, w.in] += dout [N, w.out] . W.
template <typename T>
void frozen_linear_backward(T* din, const T* dout, const FrozenLinear<T>& w, int64_t N, ThreadPool& pool) {
  matmul_backward(din, static_cast<T*>(nullptr), dout, static_cast<const T*>(nullptr), w.w, N, w.in, w.out, pool);
}

}  // namespace baichuan::train
