// The blocked attention of kernels/attention.h, written once over a vector type V and instantiated
// by attention.cpp (scalar, V of one float), attention_avx2.cpp and attention_avx512.cpp. Every
// function here is a template on V, and each V lives in its file's anonymous namespace, so code
// compiled with AVX-512 flags never stands in for another file's copy at link time.
//
// V provides: kWidth; zero(), set1(f), load(p), store(p, v), fma(a, b, c) = a*b + c, mul, add, sub,
// max, exp (0 for -inf and anything below about -87), reduce_add, iota() = (0, 1, ...),
// and keep_at_or_after(qpos, jpos, s) = qpos >= jpos ? s : -inf per lane.
//
// Per key tile (kAttentionKeyTile cached positions converted to float):
//   many query rows (wide): the tile's queries are stored transposed once (head_dim x rows), so a
//     register block of 4 keys x up to 4 vectors of query rows is a rank-1 update per element of
//     head_dim, and the online softmax runs across query rows, a vector at a time;
//   few query rows (narrow, decoding): each score is a dot product over head_dim and the softmax runs
//     across keys. Padding one query row to a whole vector of rows would waste most of the work.
// Then out += p x V in register blocks of up to 4 query rows x 4 vectors of head_dim.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/attention.h"
#include "kernels/vec.h"

namespace baichuan::kernels::attention_detail {

inline constexpr int64_t kPadTo = 16;          // head_dim and query rows pad to the widest vector
inline constexpr int64_t kNarrowBelow = 4;     // fewer query rows than this take the narrow path
inline constexpr float kNoMaxYet = -1e30f;     // finite, so exp(old - new) is 1, never NaN, before any key
inline constexpr int kBlockKeys = 4;           // keys per register block of the wide scores

constexpr int64_t padded(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// scores[(j + r) * stride + lanes] = dot(keys_{j+r}, queries transposed) for r < kBlockKeys, C
// vectors of query rows from `first`.
template <class V, int C>
void wide_score_block(const float* keys, int64_t dp, const float* queries_t, int64_t stride, int64_t d,
                      int64_t first, float* scores) {
  typename V::reg acc[kBlockKeys][C];
  for (auto& row : acc)
    for (auto& a : row) a = V::zero();
  for (int64_t c = 0; c < d; ++c) {
    typename V::reg q[C];
    for (int v = 0; v < C; ++v) q[v] = V::load(queries_t + c * stride + first + v * V::kWidth);
    for (int r = 0; r < kBlockKeys; ++r) {
      const typename V::reg k = V::set1(keys[r * dp + c]);
      for (int v = 0; v < C; ++v) acc[r][v] = V::fma(k, q[v], acc[r][v]);
    }
  }
  for (int r = 0; r < kBlockKeys; ++r)
    for (int v = 0; v < C; ++v) V::store(scores + r * stride + first + v * V::kWidth, acc[r][v]);
}

template <class V>
void wide_scores(const float* keys, int64_t dp, int64_t n_keys, const float* queries_t, int64_t stride,
                 int64_t d, float* scores) {
  constexpr int64_t kMaxVectors = V::kWidth >= 16 ? 4 : V::kWidth >= 8 ? 2 : 4;
  for (int64_t j = 0; j < n_keys; j += kBlockKeys)
    for (int64_t first = 0; first < stride;) {
      const int64_t vectors = std::min<int64_t>(kMaxVectors, (stride - first) / V::kWidth);
      const float* k = keys + j * dp;
      float* s = scores + j * stride;
      switch (vectors) {
        case 1: wide_score_block<V, 1>(k, dp, queries_t, stride, d, first, s); break;
        case 2: wide_score_block<V, 2>(k, dp, queries_t, stride, d, first, s); break;
        case 3: wide_score_block<V, 3>(k, dp, queries_t, stride, d, first, s); break;
        default: wide_score_block<V, 4>(k, dp, queries_t, stride, d, first, s); break;
      }
      first += vectors * V::kWidth;
    }
}

// out rows [i0, i0 + R) += sum_{j < n_keys} p(j, i) * values_j over C vectors of head_dim from
// column c0, where p(j, i) = probs[j * p_key_stride + i * p_row_stride].
template <class V, int R, int C>
void accumulate_block(const float* probs, int64_t p_key_stride, int64_t p_row_stride, const float* values,
                      int64_t dp, int64_t n_keys, int64_t i0, int64_t c0, float* out) {
  typename V::reg acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < C; ++v) acc[r][v] = V::load(out + (i0 + r) * dp + c0 + v * V::kWidth);
  for (int64_t j = 0; j < n_keys; ++j) {
    typename V::reg x[C];
    for (int v = 0; v < C; ++v) x[v] = V::load(values + j * dp + c0 + v * V::kWidth);
    for (int r = 0; r < R; ++r) {
      const typename V::reg p = V::set1(probs[j * p_key_stride + (i0 + r) * p_row_stride]);
      for (int v = 0; v < C; ++v) acc[r][v] = V::fma(p, x[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < C; ++v) V::store(out + (i0 + r) * dp + c0 + v * V::kWidth, acc[r][v]);
}

template <class V, int R>
void accumulate_rows(const float* probs, int64_t p_key_stride, int64_t p_row_stride, const float* values,
                     int64_t dp, int64_t n_keys, int64_t i0, float* out) {
  constexpr int64_t kMaxVectors = V::kWidth >= 16 ? 4 : V::kWidth >= 8 ? 2 : 4;
  for (int64_t c0 = 0; c0 < dp;) {
    const int64_t vectors = std::min<int64_t>(kMaxVectors, (dp - c0) / V::kWidth);
    switch (vectors) {
      case 1: accumulate_block<V, R, 1>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i0, c0, out); break;
      case 2: accumulate_block<V, R, 2>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i0, c0, out); break;
      case 3: accumulate_block<V, R, 3>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i0, c0, out); break;
      default: accumulate_block<V, R, 4>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i0, c0, out); break;
    }
    c0 += vectors * V::kWidth;
  }
}

template <class V>
void accumulate(const float* probs, int64_t p_key_stride, int64_t p_row_stride, const float* values, int64_t dp,
                int64_t n_keys, int64_t n_rows, float* out) {
  int64_t i = 0;
  for (; i + 4 <= n_rows; i += 4) accumulate_rows<V, 4>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i, out);
  switch (n_rows - i) {
    case 1: accumulate_rows<V, 1>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i, out); break;
    case 2: accumulate_rows<V, 2>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i, out); break;
    case 3: accumulate_rows<V, 3>(probs, p_key_stride, p_row_stride, values, dp, n_keys, i, out); break;
    default: break;
  }
}

// Converts cached positions [j0, j0 + n) to float rows of dp; rows up to a multiple of kBlockKeys
// and columns past head_dim are zero, so the register blocks may read them.
inline void load_tile(const AttentionHead& h, const std::byte* base, int64_t j0, int64_t n, int64_t dp, float* out) {
  const int64_t d = h.head_dim;
  for (int64_t j = 0; j < n; ++j) {
    row_to_f32(h.kv_type, base + static_cast<size_t>(j0 + j) * h.kv_stride, out + j * dp, d);
    for (int64_t c = d; c < dp; ++c) out[j * dp + c] = 0.0f;
  }
  for (int64_t j = n; j < padded(n, kBlockKeys); ++j)
    for (int64_t c = 0; c < dp; ++c) out[j * dp + c] = 0.0f;
}

// Scales the running sums of rows whose max grew (by exp(old max - new max)).
template <class V>
void rescale_rows(const float* rescale, int64_t n_rows, int64_t dp, float* out) {
  for (int64_t i = 0; i < n_rows; ++i) {
    if (rescale[i] == 1.0f) continue;
    const typename V::reg f = V::set1(rescale[i]);
    for (int64_t c = 0; c < dp; c += V::kWidth) V::store(out + i * dp + c, V::mul(f, V::load(out + i * dp + c)));
  }
}

// Many query rows: scores[j * stride + i], softmax across i a vector at a time.
template <class V>
void attend_wide(const AttentionHead& h, const AttentionScratch& s, int64_t dp) {
  const int64_t n = h.n_queries, d = h.head_dim, stride = padded(n, V::kWidth);
  for (int64_t c = 0; c < d; ++c) {
    for (int64_t i = 0; i < n; ++i) s.queries[c * stride + i] = h.queries[i * h.query_stride + c];
    for (int64_t i = n; i < stride; ++i) s.queries[c * stride + i] = 0.0f;
  }
  const int64_t last = h.pos0 + n - 1;
  for (int64_t j0 = 0; j0 <= last; j0 += kAttentionKeyTile) {
    const int64_t nk = std::min(kAttentionKeyTile, last + 1 - j0);
    load_tile(h, h.keys, j0, nk, dp, s.keys);
    load_tile(h, h.values, j0, nk, dp, s.values);
    wide_scores<V>(s.keys, dp, nk, s.queries, stride, d, s.scores);
    const typename V::reg scale = V::set1(h.scale);
    for (int64_t i = 0; i < stride; i += V::kWidth) {
      const typename V::reg qpos = V::add(V::set1(static_cast<float>(h.pos0 + i)), V::iota());
      const typename V::reg old_max = V::load(s.row_max + i);
      typename V::reg new_max = old_max;
      for (int64_t j = 0; j < nk; ++j) {
        const float jpos = static_cast<float>(j0 + j);
        float* row = s.scores + j * stride + i;
        const typename V::reg x = V::fma(V::load(row), scale, V::set1(h.alibi_slope * jpos));
        const typename V::reg kept = V::keep_at_or_after(qpos, V::set1(jpos), x);
        V::store(row, kept);
        new_max = V::max(new_max, kept);
      }
      typename V::reg sum = V::zero();
      for (int64_t j = 0; j < nk; ++j) {
        float* row = s.scores + j * stride + i;
        const typename V::reg p = V::exp(V::sub(V::load(row), new_max));
        V::store(row, p);
        sum = V::add(sum, p);
      }
      const typename V::reg rescale = V::exp(V::sub(old_max, new_max));
      V::store(s.rescale + i, rescale);
      V::store(s.row_sum + i, V::fma(V::load(s.row_sum + i), rescale, sum));
      V::store(s.row_max + i, new_max);
    }
    rescale_rows<V>(s.rescale, n, dp, s.out);
    accumulate<V>(s.scores, stride, 1, s.values, dp, nk, n, s.out);
  }
}

// Few query rows: scores[i * kAttentionKeyTile + j], softmax across j.
template <class V>
void attend_narrow(const AttentionHead& h, const AttentionScratch& s, int64_t dp) {
  const int64_t n = h.n_queries, d = h.head_dim;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < dp; ++c) s.queries[i * dp + c] = c < d ? h.queries[i * h.query_stride + c] : 0.0f;
  const int64_t last = h.pos0 + n - 1;
  for (int64_t j0 = 0; j0 <= last; j0 += kAttentionKeyTile) {
    const int64_t nk = std::min(kAttentionKeyTile, last + 1 - j0);
    load_tile(h, h.keys, j0, nk, dp, s.keys);
    load_tile(h, h.values, j0, nk, dp, s.values);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t seen = std::clamp<int64_t>(h.pos0 + i + 1 - j0, 0, nk);  // keys of the tile row i sees
      float* row = s.scores + i * kAttentionKeyTile;
      const float* q = s.queries + i * dp;
      for (int64_t j = 0; j < seen; ++j) {
        typename V::reg acc = V::zero();
        for (int64_t c = 0; c < dp; c += V::kWidth) acc = V::fma(V::load(q + c), V::load(s.keys + j * dp + c), acc);
        row[j] = V::reduce_add(acc) * h.scale + h.alibi_slope * static_cast<float>(j0 + j);
      }
      float new_max = s.row_max[i];
      for (int64_t j = 0; j < seen; ++j) new_max = std::max(new_max, row[j]);
      float sum = 0.0f;
      int64_t j = 0;
      const typename V::reg m = V::set1(new_max);
      typename V::reg vsum = V::zero();
      for (; j + V::kWidth <= seen; j += V::kWidth) {
        const typename V::reg p = V::exp(V::sub(V::load(row + j), m));
        V::store(row + j, p);
        vsum = V::add(vsum, p);
      }
      sum = V::reduce_add(vsum);
      for (; j < seen; ++j) sum += (row[j] = std::exp(row[j] - new_max));
      for (j = seen; j < nk; ++j) row[j] = 0.0f;
      s.rescale[i] = std::exp(s.row_max[i] - new_max);
      s.row_sum[i] = s.row_sum[i] * s.rescale[i] + sum;
      s.row_max[i] = new_max;
    }
    rescale_rows<V>(s.rescale, n, dp, s.out);
    accumulate<V>(s.scores, 1, kAttentionKeyTile, s.values, dp, nk, n, s.out);
  }
}

template <class V>
void attend_blocked(const AttentionHead& h, const AttentionScratch& s) {
  const int64_t dp = padded(h.head_dim, kPadTo), n = h.n_queries;
  for (int64_t i = 0; i < padded(n, kPadTo); ++i) {
    s.row_max[i] = kNoMaxYet;
    s.row_sum[i] = 0.0f;
  }
  for (int64_t i = 0; i < padded(n, 4) * dp; ++i) s.out[i] = 0.0f;
  if (n < kNarrowBelow)
    attend_narrow<V>(h, s, dp);
  else
    attend_wide<V>(h, s, dp);
  for (int64_t i = 0; i < n; ++i) {
    const float inv = 1.0f / s.row_sum[i];  // > 0: every row sees position 0
    for (int64_t c = 0; c < h.head_dim; ++c) h.out[i * h.out_stride + c] = s.out[i * dp + c] * inv;
  }
}

}  // namespace baichuan::kernels::attention_detail
