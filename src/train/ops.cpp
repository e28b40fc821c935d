#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/vec.h"
#include "train/grad_kernels.h"

namespace baichuan::train {

namespace {

constexpr int64_t kRowBlock = 8;  // weight rows per unit of work in the double matmul

// The inner loops: the project's SIMD kernels for float, plain loops for double.
template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return kernels::dot_f32(a, b, n);
  } else {
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
  }
}

// y += a * x
template <typename T>
void axpy(T* y, T a, const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::axpy_row(DType::F32, reinterpret_cast<const std::byte*>(x), a, y, n);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
}

}  // namespace

// ---- embedding ----

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) std::copy_n(table + static_cast<int64_t>(ids[n]) * C, C, out + n * C);
}

// Rows of the same id collide, so this runs on one thread, in token order.
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t C, int32_t padding_idx) {
  for (int64_t n = 0; n < N; ++n)
    if (ids[n] != padding_idx) axpy(dtable + static_cast<int64_t>(ids[n]) * C, T(1), dout + n * C, C);
}

// ---- RMSNorm ----

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* w, int64_t N, int64_t C, T eps, ThreadPool& pool) {
  pool.parallel_for(N, [&](int64_t begin, int64_t end, int) {
    for (int64_t n = begin; n < end; ++n) {
      const T* xr = x + n * C;
      double sum_sq = 0;
      for (int64_t i = 0; i < C; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
      const T r = T(1) / std::sqrt(static_cast<T>(sum_sq / static_cast<double>(C)) + eps);
      for (int64_t i = 0; i < C; ++i) out[n * C + i] = w[i] * (xr[i] * r);
      rstd[n] = r;
    }
  });
}

// y_i = w_i x_i r with r = (mean(x^2) + eps)^-1/2, so dr/dx_k = -r^3 x_k / C and
// dx_k = r w_k dy_k - r^3 x_k / C * sum_i dy_i w_i x_i.
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dout, const T* x, const T* w, const T* rstd, int64_t N, int64_t C,
                      ThreadPool& pool) {
  pool.parallel_for(N, [&](int64_t begin, int64_t end, int) {
    for (int64_t n = begin; n < end; ++n) {
      const T *xr = x + n * C, *dy = dout + n * C;
      const T r = rstd[n];
      double sum = 0;
      for (int64_t i = 0; i < C; ++i) sum += static_cast<double>(dy[i]) * w[i] * xr[i];
      const T k = static_cast<T>(sum) * r * r * r / static_cast<T>(C);
      for (int64_t i = 0; i < C; ++i) dx[n * C + i] += r * (w[i] * dy[i]) - k * xr[i];
    }
  });
  // The weight gradient sums over rows: each thread owns columns and walks the rows in order.
  if (dw)
    pool.parallel_for(C, [&](int64_t begin, int64_t end, int) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = begin; i < end; ++i) dw[i] += dout[n * C + i] * x[n * C + i] * rstd[n];
    });
}

// ---- matrix products ----

template <typename T>
void matmul_forward(T* out, const T* in, const T* w, int64_t N, int64_t I, int64_t O, ThreadPool& pool) {
  if constexpr (std::is_same_v<T, float>) {  // the inference kernel: register tiles, SIMD
    kernels::WeightMatrix m;
    m.dtype = DType::F32;
    m.data = reinterpret_cast<const std::byte*>(w);
    m.rows = O;
    m.cols = I;
    m.row_bytes = static_cast<size_t>(I) * sizeof(float);
    kernels::matmul(m, in, N, out, O, pool);
  } else {
    pool.parallel_for(O, [&](int64_t begin, int64_t end, int) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = begin; o < end; ++o) out[n * O + o] = dot(in + n * I, w + o * I, I);
    }, kRowBlock);
  }
}

namespace {

// Threads split the products in multiples of the widest register tile (grad_kernels_avx512.cpp), so
// no thread gets a padded edge tile that a wider split would have avoided.
constexpr int64_t kGradRows = 8, kGradCols = 32;
constexpr int64_t kFewGradRows = 256;  // below this, din's column chunks are widened (see matmul_backward)

// y[r, c] += sum_k a[r, k] b[k, c], k in order (see grad_kernels.h; double: the plain loops).
template <typename T>
void accumulate(T* y, int64_t y_stride, const T* a, int64_t a_row, int64_t a_col, int64_t rows, const T* b,
                int64_t b_stride, int64_t K, int64_t cols) {
  if constexpr (std::is_same_v<T, float>) {
    accumulate_products(y, y_stride, a, a_row, a_col, rows, b, b_stride, K, cols);
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < K; ++k) axpy(y + r * y_stride, a[r * a_row + k * a_col], b + k * b_stride, cols);
  }
}

}  // namespace

// din [N, I] += dout [N, O] . w [O, I] and dw [O, I] += dout^T . in [N, I]; every element sums its
// terms in order of o (of n). Threads split din by columns, so w is read once per call however few
// the rows (the head: up to kHeadChunkRows rows against 125,696 rows of w), and dw by rows. Each
// column chunk reads all of dout, so with fewer than kFewGradRows rows the chunks are 4 tiles wide:
// with the head's former 32-row chunks (16 MB of dout) its din took 17% less time than with chunks of
// one tile (BM_train_product/head_din). A full 256-row head chunk is not below that bound.
template <typename T>
void matmul_backward(T* din, T* dw, const T* dout, const T* in, const T* w, int64_t N, int64_t I, int64_t O,
                     ThreadPool& pool) {
  if (din)
    pool.parallel_for(I, [&](int64_t begin, int64_t end, int) {
      accumulate(din + begin, I, dout, O, 1, N, w + begin, I, O, end - begin);
    }, N < kFewGradRows ? 4 * kGradCols : kGradCols);
  if (dw)
    pool.parallel_for(O, [&](int64_t begin, int64_t end, int) {
      accumulate(dw + begin * I, I, dout + begin, 1, O, end - begin, in, I, N, I);
    }, kGradRows);
}

// ---- rotary embeddings ----

template <typename T>
RopeTable<T> rope_table(int64_t seq_len, int64_t head_dim, float theta) {
  RopeTable<T> t;
  t.half = head_dim / 2;
  t.cos.resize(static_cast<size_t>(seq_len * t.half));
  t.sin.resize(t.cos.size());
  const std::vector<float> inv_freq = kernels::rope_inv_freq(head_dim, theta);
  for (int64_t p = 0; p < seq_len; ++p)
    for (int64_t i = 0; i < t.half; ++i) {
      double angle;
      if constexpr (std::is_same_v<T, float>) {  // torch.outer(t, inv_freq) in float32
        angle = static_cast<float>(p) * inv_freq[static_cast<size_t>(i)];
      } else {
        const double exponent = 2.0 * static_cast<double>(i) / static_cast<double>(head_dim);
        angle = static_cast<double>(p) / std::pow(static_cast<double>(theta), exponent);
      }
      t.cos[static_cast<size_t>(p * t.half + i)] = static_cast<T>(std::cos(angle));
      t.sin[static_cast<size_t>(p * t.half + i)] = static_cast<T>(std::sin(angle));
    }
  return t;
}

namespace {

// Rotates the Q and K heads of every row by +angle (sign 1) or -angle (sign -1).
template <typename T>
void rotate_qk(T* qkv, const RopeTable<T>& table, const QkvShape& s, T sign, ThreadPool& pool) {
  const int64_t H = s.hidden(), half = table.half;
  pool.parallel_for(s.batch * s.seq_len, [&](int64_t begin, int64_t end, int) {
    for (int64_t n = begin; n < end; ++n) {
      const T* c = table.cos.data() + (n % s.seq_len) * half;
      const T* sn = table.sin.data() + (n % s.seq_len) * half;
      for (int64_t part = 0; part < 2; ++part)  // Q, then K
        for (int64_t h = 0; h < s.heads; ++h) {
          T* x = qkv + n * 3 * H + part * H + h * s.head_dim;
          for (int64_t i = 0; i < half; ++i) {
            const T a = x[i], b = x[i + half], si = sign * sn[i];
            x[i] = a * c[i] - b * si;
            x[i + half] = b * c[i] + a * si;
          }
        }
    }
  });
}

}  // namespace

template <typename T>
void rope_forward(T* qkv, const RopeTable<T>& table, const QkvShape& s, ThreadPool& pool) {
  rotate_qk(qkv, table, s, T(1), pool);
}

template <typename T>
void rope_backward(T* dqkv, const RopeTable<T>& table, const QkvShape& s, ThreadPool& pool) {
  rotate_qk(dqkv, table, s, T(-1), pool);
}

// ---- attention ----

namespace {

// Whether query i sees key j of the same sequence under the official masks (7B: causal + key
// padding; 13B: causal, and both tokens real).
bool sees(bool alibi, int64_t i, int64_t j, bool query_real, bool key_real) {
  return j <= i && key_real && (query_real || !alibi);
}

// A query that sees no key (a padded query in 13B, a sequence that starts with padding in 7B): every
// score sits at or below float's lowest value, and torch's softmax is uniform over the keys at
// exactly that value. 13B clamps all scores to it, so that is every key; 7B adds a causal and a
// padding mask of that value each, so keys masked by both reach -inf and the keys masked by
// exactly one remain.
bool fallback_key(bool alibi, int64_t i, int64_t j, bool key_real) { return alibi || ((j > i) == key_real); }

// Rows of one (sequence, head) unit: pointers to its Q, K, V heads.
template <typename T>
struct HeadView {
  const T* qkv;
  int64_t row_stride, H, head_dim;
  const T* q(int64_t t) const { return qkv + t * row_stride; }
  const T* k(int64_t t) const { return qkv + t * row_stride + H; }
  const T* v(int64_t t) const { return qkv + t * row_stride + 2 * H; }
};

template <typename T>
T score(const HeadView<T>& hv, int64_t i, int64_t j, T scale, T slope) {
  return dot(hv.q(i), hv.k(j), hv.head_dim) * scale + slope * static_cast<T>(j - i);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, const uint8_t* key_mask, const T* alibi_slopes,
                       const QkvShape& s, ThreadPool& pool) {
  const int64_t Tn = s.seq_len, H = s.hidden(), d = s.head_dim;
  const bool alibi = alibi_slopes != nullptr;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
  pool.parallel_for(s.batch * s.heads, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<T> scores;
    scores.resize(static_cast<size_t>(Tn));
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / s.heads, h = unit % s.heads;
      const HeadView<T> hv{qkv + b * Tn * 3 * H + h * d, 3 * H, H, d};
      const uint8_t* mask = key_mask + b * Tn;
      const T slope = alibi ? alibi_slopes[h] : T(0);
      for (int64_t i = 0; i < Tn; ++i) {
        T* o = out + (b * Tn + i) * H + h * d;
        std::fill(o, o + d, T(0));
        T max = -std::numeric_limits<T>::infinity();
        int64_t seen = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (sees(alibi, i, j, mask[i], mask[j])) {
            scores[static_cast<size_t>(j)] = score(hv, i, j, scale, slope);
            max = std::max(max, scores[static_cast<size_t>(j)]);
            ++seen;
          }
        T& row_lse = lse[(b * s.heads + h) * Tn + i];
        if (seen == 0) {
          int64_t count = 0;
          for (int64_t j = 0; j < Tn; ++j) count += fallback_key(alibi, i, j, mask[j]);
          for (int64_t j = 0; j < Tn; ++j)
            if (fallback_key(alibi, i, j, mask[j])) axpy(o, T(1) / static_cast<T>(count), hv.v(j), d);
          row_lse = 0;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (sees(alibi, i, j, mask[i], mask[j])) {
            scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max);
            sum += scores[static_cast<size_t>(j)];
          }
        const T inv = static_cast<T>(1.0 / sum);
        for (int64_t j = 0; j <= i; ++j)
          if (sees(alibi, i, j, mask[i], mask[j])) axpy(o, scores[static_cast<size_t>(j)] * inv, hv.v(j), d);
        row_lse = max + static_cast<T>(std::log(sum));
      }
    }
  });
}

// With p_j = softmax(s)_j and dp_j = dO . v_j: dv_j += p_j dO, ds_j = p_j (dp_j - sum_k p_k dp_k),
// dq += scale ds_j k_j, dk_j += scale ds_j q. Each unit (sequence, head) owns its slice of dqkv.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* lse, const uint8_t* key_mask,
                        const T* alibi_slopes, const QkvShape& s, ThreadPool& pool) {
  const int64_t Tn = s.seq_len, H = s.hidden(), d = s.head_dim;
  const bool alibi = alibi_slopes != nullptr;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
  pool.parallel_for(s.batch * s.heads, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<T> p, dp;
    p.resize(static_cast<size_t>(Tn));
    dp.resize(static_cast<size_t>(Tn));
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / s.heads, h = unit % s.heads;
      const HeadView<T> hv{qkv + b * Tn * 3 * H + h * d, 3 * H, H, d};
      T* dbase = dqkv + b * Tn * 3 * H + h * d;
      auto dq = [&](int64_t t) { return dbase + t * 3 * H; };
      auto dk = [&](int64_t t) { return dbase + t * 3 * H + H; };
      auto dv = [&](int64_t t) { return dbase + t * 3 * H + 2 * H; };
      const uint8_t* mask = key_mask + b * Tn;
      const T slope = alibi ? alibi_slopes[h] : T(0);
      for (int64_t i = 0; i < Tn; ++i) {
        const T* dO = dout + (b * Tn + i) * H + h * d;
        const T row_lse = lse[(b * s.heads + h) * Tn + i];
        int64_t seen = 0;
        double D = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (sees(alibi, i, j, mask[i], mask[j])) {
            const auto jj = static_cast<size_t>(j);
            p[jj] = std::exp(score(hv, i, j, scale, slope) - row_lse);
            dp[jj] = dot(dO, hv.v(j), d);
            D += static_cast<double>(p[jj]) * dp[jj];
            ++seen;
          }
        if (seen == 0) {  // the uniform fallback: only V gets a gradient
          int64_t count = 0;
          for (int64_t j = 0; j < Tn; ++j) count += fallback_key(alibi, i, j, mask[j]);
          for (int64_t j = 0; j < Tn; ++j)
            if (fallback_key(alibi, i, j, mask[j])) axpy(dv(j), T(1) / static_cast<T>(count), dO, d);
          continue;
        }
        for (int64_t j = 0; j <= i; ++j)
          if (sees(alibi, i, j, mask[i], mask[j])) {
            const auto jj = static_cast<size_t>(j);
            const T ds = p[jj] * (dp[jj] - static_cast<T>(D)) * scale;
            axpy(dq(i), ds, hv.k(j), d);
            axpy(dk(j), ds, hv.q(i), d);
            axpy(dv(j), p[jj], dO, d);
          }
      }
    }
  });
}

// ---- SiLU-gated MLP ----

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) out[i] = gate[i] / (T(1) + std::exp(-gate[i])) * up[i];
  }, 1024);
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const T g = gate[i], sig = T(1) / (T(1) + std::exp(-g));
      dgate[i] = dout[i] * up[i] * (sig * (T(1) + g * (T(1) - sig)));
      dup[i] = dout[i] * g * sig;
    }
  }, 1024);
}

// ---- NormHead ----

namespace {
constexpr double kNormalizeEps = 1e-12;  // F.normalize's default
}

template <typename T>
void normalize_rows_forward(T* out, T* norm, const T* w, int64_t rows, int64_t C, ThreadPool& pool) {
  pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      double sum_sq = 0;
      for (int64_t i = 0; i < C; ++i) sum_sq += static_cast<double>(w[r * C + i]) * w[r * C + i];
      norm[r] = std::max(static_cast<T>(std::sqrt(sum_sq)), static_cast<T>(kNormalizeEps));
      for (int64_t i = 0; i < C; ++i) out[r * C + i] = w[r * C + i] / norm[r];
    }
  }, 64);
}

// At the clamp (|w| <= 1e-12) out = w / eps is linear in w and the projection term vanishes.
template <typename T>
void normalize_rows_backward(T* dw, const T* dout, const T* out, const T* norm, int64_t rows, int64_t C,
                             ThreadPool& pool) {
  pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const T *o = out + r * C, *g = dout + r * C;
      const T proj = norm[r] == static_cast<T>(kNormalizeEps) ? T(0) : dot(o, g, C);
      for (int64_t i = 0; i < C; ++i) dw[r * C + i] += (g[i] - o[i] * proj) / norm[r];
    }
  }, 64);
}

// ---- cross-entropy and z-loss ----

template <typename T>
void cross_entropy_forward_backward(T* logits, double* ce, double* z, const int32_t* targets, int64_t rows, int64_t V,
                                    double ce_scale, double z_scale, ThreadPool& pool) {
  pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      T* x = logits + r * V;
      int64_t argmax = 0;
      for (int64_t v = 1; v < V; ++v)
        if (x[v] > x[argmax]) argmax = v;
      const T max = x[argmax];
      z[r] = static_cast<double>(max) * static_cast<double>(max);
      const int32_t target = targets[r];
      if (target < 0) {  // a row only in the z-loss
        ce[r] = 0;
        std::fill(x, x + V, T(0));
      } else {
        // The gradient replaces the logits: ce_scale * (softmax - onehot), one exp per logit.
        const T target_logit = x[target];
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) {
          x[v] = std::exp(x[v] - max);
          sum += x[v];
        }
        ce[r] = static_cast<double>(max) + std::log(sum) - static_cast<double>(target_logit);
        const T scale = static_cast<T>(ce_scale / sum);
        for (int64_t v = 0; v < V; ++v) x[v] *= scale;
        x[target] -= static_cast<T>(ce_scale);
      }
      // z-loss: d(max^2) = 2 max at the argmax.
      x[argmax] += static_cast<T>(z_scale * 2.0 * static_cast<double>(max));
    }
  });
}

// ---- explicit instantiations ----

#define BAICHUAN_TRAIN_OPS(T)                                                                                    \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);                           \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, int32_t);                 \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T, ThreadPool&);                \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t,           \
                                    ThreadPool&);                                                                \
  template void matmul_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, ThreadPool&);              \
  template void matmul_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, ThreadPool&); \
  template RopeTable<T> rope_table<T>(int64_t, int64_t, float);                                                  \
  template void rope_forward<T>(T*, const RopeTable<T>&, const QkvShape&, ThreadPool&);                         \
  template void rope_backward<T>(T*, const RopeTable<T>&, const QkvShape&, ThreadPool&);                        \
  template void attention_forward<T>(T*, T*, const T*, const uint8_t*, const T*, const QkvShape&, ThreadPool&); \
  template void attention_backward<T>(T*, const T*, const T*, const T*, const uint8_t*, const T*,               \
                                      const QkvShape&, ThreadPool&);                                             \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, ThreadPool&);                                \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, ThreadPool&);                 \
  template void normalize_rows_forward<T>(T*, T*, const T*, int64_t, int64_t, ThreadPool&);                     \
  template void normalize_rows_backward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, ThreadPool&);    \
  template void cross_entropy_forward_backward<T>(T*, double*, double*, const int32_t*, int64_t, int64_t, double, \
                                                  double, ThreadPool&);

BAICHUAN_TRAIN_OPS(float)
BAICHUAN_TRAIN_OPS(double)

}  // namespace baichuan::train
