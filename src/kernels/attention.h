// Causal attention of one head over a KV cache, blocked as flash attention is on CPUs: the cached
// keys and values are read in tiles of kAttentionKeyTile positions, converted to float once per
// tile, and used by every query row of the call; an online softmax (running max and sum per row,
// earlier partial sums rescaled when the max grows) means no row ever holds all its scores.
// Cost is linear in the keys per query row, and the memory is a few fixed tiles whatever the context.
//
// One scalar version and AVX2 / AVX-512 versions of the same algorithm (attention_kernel.h); attend()
// picks the one of the active backend (kernels/cpu.h). The test's reference is a plain softmax in
// double, not any of these.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::kernels {

inline constexpr int64_t kAttentionKeyTile = 64;    // cached positions converted to float together
inline constexpr int64_t kAttentionQueryTile = 64;  // the most query rows of one call (they share each key tile)

// Query row i (i < n_queries) is at position pos0 + i and sees the cached positions [0, pos0 + i]
// (its own included, so the cache holds positions up to pos0 + n_queries - 1):
//   score(i, j) = dot(q_i, k_j) * scale + alibi_slope * j   (ALiBi's bias; slope 0 for RoPE)
//   out_i = sum_j softmax_j(score(i, .)) * v_j
struct AttentionHead {
  const float* queries = nullptr;  // row i at queries + i * query_stride, head_dim floats
  int64_t query_stride = 0;
  int64_t n_queries = 0, pos0 = 0;
  // Position j's key at keys + j * kv_stride bytes (same for values), head_dim elements of kv_type:
  // F32, F16, BF16, or a block type whose blocks divide head_dim (Q8_0).
  const std::byte* keys = nullptr;
  const std::byte* values = nullptr;
  size_t kv_stride = 0;
  DType kv_type = DType::F32;
  int64_t head_dim = 0;
  float scale = 1.0f, alibi_slope = 0.0f;
  float* out = nullptr;  // row i at out + i * out_stride, head_dim floats
  int64_t out_stride = 0;
};

// Throws Error if n_queries is not in [1, kAttentionQueryTile] or a size is not positive.
// Uses per-thread scratch (grown once); safe to call from many threads at once.
void attend(const AttentionHead& head);

// The working tiles of one call, from attention_scratch_floats(head_dim) floats (64-byte aligned).
struct AttentionScratch {
  float* queries;  // kAttentionQueryTile x padded head_dim (transposed for many rows)
  float* keys;     // kAttentionKeyTile x padded head_dim
  float* values;   // kAttentionKeyTile x padded head_dim
  float* scores;   // kAttentionKeyTile x kAttentionQueryTile
  float* out;      // kAttentionQueryTile x padded head_dim: the running weighted sums
  float* row_max;  // kAttentionQueryTile each: the online softmax's state
  float* row_sum;
  float* rescale;
};
int64_t attention_scratch_floats(int64_t head_dim);
AttentionScratch attention_scratch(float* base, int64_t head_dim);

namespace scalar {
void attend(const AttentionHead& head, const AttentionScratch& scratch);
}
namespace avx2 {
void attend(const AttentionHead& head, const AttentionScratch& scratch);
}
namespace avx512 {
void attend(const AttentionHead& head, const AttentionScratch& scratch);
}

}  // namespace baichuan::kernels
