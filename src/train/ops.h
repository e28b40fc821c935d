// Every operation of Baichuan 2 training as a forward function and its backward function over plain
// row-major arrays (llm.c style). Templated on the float type: float trains, double is what the
// finite-difference checks differentiate.
//
// Conventions:
//  - N rows (B sequences of T tokens), activations [N, C]; weights [out, in] as in PyTorch.
//  - Backward functions ADD into their gradient outputs (weight gradients accumulate over
//    micro-batches; the caller zeroes them), unless the comment says "overwrites".
//  - Work is split over rows of an output and every output element is computed by one thread in a
//    fixed order, so results are bit-identical for any number of threads.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace baichuan::train {

// out[n] = table[ids[n]]
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C);
// dtable[ids[n]] += dout[n], except for `padding_idx`, whose row nn.Embedding never updates.
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t C, int32_t padding_idx);

// out = x / sqrt(mean(x^2) + eps) * w; rstd[n] keeps 1 / sqrt(mean(x^2) + eps) for the backward.
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* w, int64_t N, int64_t C, T eps, ThreadPool& pool);
// dw may be null (a frozen weight).
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dout, const T* x, const T* w, const T* rstd, int64_t N, int64_t C,
                      ThreadPool& pool);

// out[N, O] = in[N, I] . w[O, I]^T (overwrites out).
template <typename T>
void matmul_forward(T* out, const T* in, const T* w, int64_t N, int64_t I, int64_t O, ThreadPool& pool);
// din += dout . w, dw += dout^T . in; either may be null.
template <typename T>
void matmul_backward(T* din, T* dw, const T* dout, const T* in, const T* w, int64_t N, int64_t I, int64_t O,
                     ThreadPool& pool);

// Rotary tables for positions [0, T): cos and sin, each [T, head_dim / 2], computed as the official
// code does (float32 inverse frequencies and angles when T is float).
template <typename T>
struct RopeTable {
  std::vector<T> cos, sin;
  int64_t half = 0;
};
template <typename T>
RopeTable<T> rope_table(int64_t seq_len, int64_t head_dim, float theta);

// The shape of a fused QKV activation: rows [B * T, 3 * heads * head_dim], Q then K then V (W_pack).
struct QkvShape {
  int64_t batch = 0, seq_len = 0, heads = 0, head_dim = 0;
  int64_t hidden() const { return heads * head_dim; }
};

// Rotates the Q and K parts of every row in place at the row's position t (rotate_half pairs i, i + d/2).
template <typename T>
void rope_forward(T* qkv, const RopeTable<T>& table, const QkvShape& s, ThreadPool& pool);
// The rotation is orthogonal: the backward rotates dQ and dK back (in place).
template <typename T>
void rope_backward(T* dqkv, const RopeTable<T>& table, const QkvShape& s, ThreadPool& pool);

// Causal softmax attention of each head, with the official masks:
//  - key_mask[n] is 1 for a real token (input_ids != pad), 0 for padding;
//  - 7B (alibi_slopes == nullptr): query i sees keys j <= i that are real;
//  - 13B: query i sees keys j <= i that are real if query i is real itself, and scores get
//    slope_h * (j - i), computed on the fly (never a [heads, T, T] mask).
//  - A query that sees no key gets the average of V over the keys torch's mask leaves at the float
//    minimum (see fallback_key in ops.cpp); its output does not depend on Q or K.
// out [B * T, heads * head_dim]; lse [B, heads, T] keeps each row's log-sum-exp, so the backward
// recomputes the probabilities instead of storing [heads, T, T] of them.
template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, const uint8_t* key_mask, const T* alibi_slopes,
                       const QkvShape& s, ThreadPool& pool);
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* lse, const uint8_t* key_mask,
                        const T* alibi_slopes, const QkvShape& s, ThreadPool& pool);

// out = silu(gate) * up over n elements.
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, ThreadPool& pool);
// Overwrites dgate and dup.
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n, ThreadPool& pool);

// NormHead: out[r] = w[r] / norm[r] with norm[r] = max(|w[r]|, 1e-12) (F.normalize), kept for the backward.
template <typename T>
void normalize_rows_forward(T* out, T* norm, const T* w, int64_t rows, int64_t C, ThreadPool& pool);
// dw += (dout - out (out . dout)) / norm: the gradient through the row normalisation.
template <typename T>
void normalize_rows_backward(T* dw, const T* dout, const T* out, const T* norm, int64_t rows, int64_t C,
                             ThreadPool& pool);

// Cross-entropy and z-loss of `rows` rows of logits, forward and backward together (the logits of a
// chunk of rows are replaced by their gradient, so no [tokens, vocab] matrix is ever kept):
//   loss = ce_scale * sum_{rows with target >= 0} (logsumexp(row) - row[target])
//        + z_scale * sum_{all rows} max(row)^2
// Per-row terms go to ce[r] and z[r] (double, summed by the caller in a fixed order). Softmax in
// float32 when T is float, sums in double.
template <typename T>
void cross_entropy_forward_backward(T* logits, double* ce, double* z, const int32_t* targets, int64_t rows, int64_t V,
                                    double ce_scale, double z_scale, ThreadPool& pool);

}  // namespace baichuan::train
