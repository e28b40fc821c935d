// The frozen base weight of one linear layer in LoRA training, and the only two products training
// needs from it: the forward out = in . W^T and the backward to the input din += dout . W; never a
// weight gradient (skipping that product is where LoRA saves its time).
//
// W comes in two kinds:
//  - float rows of the TrainModel (a float checkpoint, as before);
//  - a StoredMatrix: the rows in the checkpoint's own block type (QLoRA: Q8_0, Q4_0, Q4_K, Q6_K...).
//    The forward is the inference kernel (kernels::matmul: activations quantized to the dot's 8-bit
//    blocks, integer dot products), on the packed 8-row tiles for Q4_0 / Q8_0 (StoredWeights::pack,
//    in place: no second copy). The backward dequantizes a tile of W (rows x columns) per thread
//    into floats and accumulates dout . tile with grad_kernels' accumulate_products, terms in order
//    of the output row, so it is bit-identical to matmul_backward on the dequantized float matrix.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "model/lora_adapter.h"
#include "train/ops.h"

namespace baichuan::train {

// A frozen matrix [out, in] in stored types: row blocks stacked along the output rows, each in its
// own type (W_pack's Q, K and V can be three types in a quantization mix such as Q4_K_M).
struct StoredMatrix {
  std::vector<kernels::WeightMatrix> parts;  // rows in order; file layout or packed (Interleaved8)
  int64_t in = 0, out = 0;
};

// Whether a LoRA base keeps a matrix of `type` as stored: block types with an integer dot product
// (quant::type_traits(type).dot); float types and block types without one become float32.
bool keeps_stored_type(DType type);

// The matrices of a frozen LoRA base kept in their stored types, owned (copied out of the checkpoint
// in the official row order): the layer matrices, per layer in kLoraTargets order, and, when stored
// in such a type too, the embedding (rows dequantized on lookup) and the NormHead (rows multiplied as
// stored, the products divided by the rows' norms).
class StoredWeights {
 public:
  StoredWeights(HugeBuffer bytes, std::vector<StoredMatrix> layer_matrices, int64_t layers);
  const StoredMatrix& get(int64_t layer, LoraTarget t) const;
  // Regroups the layer matrices and the head that kernels can both pack and unpack (Q4_0, Q8_0) into
  // the packed layout, in the same bytes (call after head_inv_norm, which reads the rows).
  void pack(ThreadPool& pool);
  size_t bytes() const { return bytes_.size() + head_inv_norm.size() * sizeof(float); }

  std::optional<StoredMatrix> embed, head;  // [vocab, hidden]; absent: float32 in the TrainModel
  std::vector<float> head_inv_norm;         // 1 / max(|row|, 1e-12) of each head row (F.normalize)

 private:
  HugeBuffer bytes_;
  std::vector<StoredMatrix> matrices_;
  int64_t layers_ = 0;
};

// out [N, m.out] = in [N, m.in] . W^T (overwrites out).
void stored_matrix_forward(float* out, const float* in, const StoredMatrix& m, int64_t N, ThreadPool& pool);
// din [N, m.in] += dout [N, m.out] . W.
void stored_matrix_backward(float* din, const float* dout, const StoredMatrix& m, int64_t N, ThreadPool& pool);
// out[n] = row ids[n] of a stored [vocab, hidden] table, as floats.
void stored_embedding_forward(float* out, const int32_t* ids, const StoredMatrix& table, int64_t N);
// The NormHead of a stored head: logits [N, vocab] = in [N, hidden] . (W / |W rows|)^T, computed as
// (in . W^T) * head_inv_norm; the backward takes dlogits (overwritten: scaled by head_inv_norm) and
// adds to din.
void stored_head_forward(float* logits, const float* in, const StoredWeights& w, int64_t N, ThreadPool& pool);
void stored_head_backward(float* din, float* dlogits, const StoredWeights& w, int64_t N, ThreadPool& pool);
// The plain reference the tests trust: each row dequantized, every element summed in double.
void stored_matrix_backward_reference(float* din, const float* dout, const StoredMatrix& m, int64_t N);

template <typename T>
struct FrozenLinear {
  const T* w = nullptr;                  // [out, in], row-major; or null when `stored` is set
  const StoredMatrix* stored = nullptr;  // the rows in their stored types (float training only)
  int64_t in = 0, out = 0;
};

// out [N, w.out] = in [N, w.in] . W^T (overwrites out).
template <typename T>
void frozen_linear_forward(T* out, const T* in, const FrozenLinear<T>& w, int64_t N, ThreadPool& pool) {
  if (!w.stored) return matmul_forward(out, in, w.w, N, w.in, w.out, pool);
  if constexpr (std::is_same_v<T, float>) stored_matrix_forward(out, in, *w.stored, N, pool);
  else fail("a quantized frozen base trains in float32 only");
}

// din [N, w.in] += dout [N, w.out] . W.
template <typename T>
void frozen_linear_backward(T* din, const T* dout, const FrozenLinear<T>& w, int64_t N, ThreadPool& pool) {
  if (!w.stored)
    return matmul_backward(din, static_cast<T*>(nullptr), dout, static_cast<const T*>(nullptr), w.w, N, w.in, w.out,
                           pool);
  if constexpr (std::is_same_v<T, float>) stored_matrix_backward(din, dout, *w.stored, N, pool);
  else fail("a quantized frozen base trains in float32 only");
}

}  // namespace baichuan::train
