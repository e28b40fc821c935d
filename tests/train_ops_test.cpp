// Finite-difference checks, in float64, of every training op's backward: each op's scalar loss is
// sum_k r_k out_k for a random r, whose gradient the backward computes from dout = r.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu.h"
#include "train/ops.h"

namespace baichuan::train {
namespace train_ops_test {  // named, not anonymous: the tests compile as a unity build

using Vec = std::vector<double>;

Vec random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0, double offset = 0.0) {
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (double& x : v) x = offset + normal(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// max |analytic - numeric| / max |numeric| over every element of x, numeric by central differences
// of loss() while x[i] is nudged.
double fd_error(Vec& x, const Vec& analytic, const std::function<double()>& loss, double h = 1e-6) {
  double max_err = 0, max_ref = 1e-12;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = loss();
    x[i] = keep - h;
    const double down = loss();
    x[i] = keep;
    const double numeric = (up - down) / (2 * h);
    max_err = std::max(max_err, std::abs(numeric - analytic[i]));
    max_ref = std::max(max_ref, std::abs(numeric));
  }
  return max_err / max_ref;
}

constexpr double kTol = 1e-7;

TEST(TrainOps, RmsNormBackwardMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937_64 rng(1);
  const int64_t N = 3, C = 8;
  Vec x = random_vec(N * C, rng), w = random_vec(C, rng, 0.3, 1.0), r = random_vec(N * C, rng);
  Vec out(N * C), rstd(N);
  auto loss = [&] {
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6, pool);
    return dot(out, r);
  };
  loss();
  Vec dx(N * C, 0.0), dw(C, 0.0);
  rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C, pool);
  EXPECT_LT(fd_error(x, dx, loss), kTol);
  EXPECT_LT(fd_error(w, dw, loss), kTol);
}

TEST(TrainOps, MatmulBackwardMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937_64 rng(2);
  const int64_t N = 11, I = 5, O = 9;  // more rows than one block of 8, to split over threads
  Vec in = random_vec(N * I, rng), w = random_vec(O * I, rng), r = random_vec(N * O, rng), out(N * O);
  auto loss = [&] {
    matmul_forward(out.data(), in.data(), w.data(), N, I, O, pool);
    return dot(out, r);
  };
  Vec din(N * I, 0.0), dw(O * I, 0.0);
  matmul_backward(din.data(), dw.data(), r.data(), in.data(), w.data(), N, I, O, pool);
  EXPECT_LT(fd_error(in, din, loss), kTol);
  EXPECT_LT(fd_error(w, dw, loss), kTol);
}

// Float runs on SIMD kernels (the inference tiles forward, grad_kernels.h backward): it must agree
// with the float64 loops the finite differences check, on both backends.
TEST(TrainOps, FloatMatmulAgreesWithDouble) {
  ThreadPool pool(2);
  std::mt19937_64 rng(3);
  const int64_t N = 7, I = 21, O = 13;  // 21 columns: a 16-wide tile, then one by one
  Vec in = random_vec(N * I, rng), w = random_vec(O * I, rng), dout = random_vec(N * O, rng), out(N * O);
  Vec din(N * I, 0.5), dw(O * I, -0.5);
  matmul_forward(out.data(), in.data(), w.data(), N, I, O, pool);
  matmul_backward(din.data(), dw.data(), dout.data(), in.data(), w.data(), N, I, O, pool);
  auto f = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
  const kernels::Backend initial = kernels::active_backend();
  for (auto backend : {kernels::Backend::Scalar, kernels::Backend::Avx2}) {
    if (backend == kernels::Backend::Avx2 && !kernels::cpu_features().avx2) continue;
    kernels::set_backend(backend);
    std::vector<float> inf = f(in), wf = f(w), doutf = f(dout), outf(N * O), dinf(N * I, 0.5f), dwf(O * I, -0.5f);
    matmul_forward(outf.data(), inf.data(), wf.data(), N, I, O, pool);
    matmul_backward(dinf.data(), dwf.data(), doutf.data(), inf.data(), wf.data(), N, I, O, pool);
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(outf[i], out[i], 1e-5);
    for (size_t i = 0; i < din.size(); ++i) EXPECT_NEAR(dinf[i], din[i], 1e-5);
    for (size_t i = 0; i < dw.size(); ++i) EXPECT_NEAR(dwf[i], dw[i], 1e-5);
  }
  kernels::set_backend(initial);
}

TEST(TrainOps, RopeBackwardMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937_64 rng(4);
  const QkvShape s{2, 5, 2, 6};
  const auto n = static_cast<size_t>(s.batch * s.seq_len * 3 * s.hidden());
  Vec qkv = random_vec(n, rng), r = random_vec(n, rng), work(n);
  const RopeTable<double> table = rope_table<double>(s.seq_len, s.head_dim, 10000.0f);
  auto loss = [&] {
    work = qkv;
    rope_forward(work.data(), table, s, pool);
    return dot(work, r);
  };
  Vec d = r;
  rope_backward(d.data(), table, s, pool);
  EXPECT_LT(fd_error(qkv, d, loss), kTol);
}

// Masks with every padding case: a full row, right padding (the official layout), a record that
// starts with padding (7B's uniform fallback), and an id-0 token in the middle.
std::vector<uint8_t> padding_mask(int64_t B, int64_t T) {
  std::vector<uint8_t> m(static_cast<size_t>(B * T), 1);
  for (int64_t t = T - 2; t < T; ++t) m[static_cast<size_t>(1 * T + t)] = 0;
  m[static_cast<size_t>(2 * T + 0)] = 0;
  m[static_cast<size_t>(2 * T + 3)] = 0;
  return m;
}

void check_attention(const QkvShape& s, const Vec* slopes, uint64_t seed) {
  ThreadPool pool(2);
  std::mt19937_64 rng(seed);
  const auto n = static_cast<size_t>(s.batch * s.seq_len * 3 * s.hidden());
  const auto n_out = static_cast<size_t>(s.batch * s.seq_len * s.hidden());
  Vec qkv = random_vec(n, rng), r = random_vec(n_out, rng), out(n_out), lse(static_cast<size_t>(s.batch * s.heads * s.seq_len));
  const std::vector<uint8_t> mask = padding_mask(s.batch, s.seq_len);
  const double* sl = slopes ? slopes->data() : nullptr;
  auto loss = [&] {
    attention_forward(out.data(), lse.data(), qkv.data(), mask.data(), sl, s, pool);
    return dot(out, r);
  };
  loss();
  Vec d(n, 0.0);
  attention_backward(d.data(), r.data(), qkv.data(), lse.data(), mask.data(), sl, s, pool);
  EXPECT_LT(fd_error(qkv, d, loss), kTol);
}

TEST(TrainOps, RopeFamilyAttentionBackwardWithPaddingMatchesFiniteDifferences) {
  check_attention({3, 6, 2, 4}, nullptr, 5);
}

TEST(TrainOps, AlibiAttentionBackwardWithPaddingMatchesFiniteDifferences) {
  const Vec slopes{0.5, 0.25, 0.7071};  // 3 heads: not a power of two
  check_attention({3, 6, 3, 4}, &slopes, 6);
}

// The forward values of the masked rows, against the official masks' arithmetic.
TEST(TrainOps, AttentionFallbackRowsAverageTheValuesTorchKeeps) {
  ThreadPool pool(1);
  const QkvShape s{1, 4, 1, 2};
  Vec qkv(4 * 6);
  for (int64_t t = 0; t < 4; ++t) {
    qkv[static_cast<size_t>(t * 6 + 4)] = static_cast<double>(t + 1);  // V = (t + 1, 10 (t + 1))
    qkv[static_cast<size_t>(t * 6 + 5)] = 10.0 * static_cast<double>(t + 1);
  }
  const std::vector<uint8_t> mask{0, 1, 1, 0};  // a leading and a trailing pad
  Vec out(8), lse(4);
  // 7B, query 0 (pad) sees nothing: the keys masked exactly once are 0 (padding only) and 1, 2
  // (causality only); key 3 is masked by both (-inf).
  attention_forward(out.data(), lse.data(), qkv.data(), mask.data(), static_cast<const double*>(nullptr), s, pool);
  EXPECT_DOUBLE_EQ(out[0], 2.0);
  EXPECT_DOUBLE_EQ(out[1], 20.0);
  // 13B, every padded query averages all four values.
  const Vec slopes{0.5};
  attention_forward(out.data(), lse.data(), qkv.data(), mask.data(), slopes.data(), s, pool);
  EXPECT_DOUBLE_EQ(out[0], 2.5);
  EXPECT_DOUBLE_EQ(out[6], 2.5);
  EXPECT_DOUBLE_EQ(out[7], 25.0);
}

TEST(TrainOps, SwigluBackwardMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937_64 rng(7);
  const int64_t n = 40;
  Vec gate = random_vec(n, rng, 2.0), up = random_vec(n, rng), r = random_vec(n, rng), out(n);
  auto loss = [&] {
    swiglu_forward(out.data(), gate.data(), up.data(), n, pool);
    return dot(out, r);
  };
  Vec dgate(n), dup(n);
  swiglu_backward(dgate.data(), dup.data(), r.data(), gate.data(), up.data(), n, pool);
  EXPECT_LT(fd_error(gate, dgate, loss), kTol);
  EXPECT_LT(fd_error(up, dup, loss), kTol);
}

TEST(TrainOps, NormHeadBackwardMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937_64 rng(8);
  const int64_t rows = 70, C = 6;  // more rows than one thread chunk
  Vec w = random_vec(rows * C, rng), r = random_vec(rows * C, rng), out(rows * C), norm(rows);
  auto loss = [&] {
    normalize_rows_forward(out.data(), norm.data(), w.data(), rows, C, pool);
    return dot(out, r);
  };
  loss();
  Vec dw(rows * C, 0.0);
  normalize_rows_backward(dw.data(), r.data(), out.data(), norm.data(), rows, C, pool);
  EXPECT_LT(fd_error(w, dw, loss), kTol);
}

void check_cross_entropy(double z_scale, uint64_t seed) {
  ThreadPool pool(2);
  std::mt19937_64 rng(seed);
  const int64_t rows = 5, V = 11;
  Vec logits = random_vec(rows * V, rng, 3.0);
  const std::vector<int32_t> targets{3, -1, 0, 10, -1};  // -1: an ignored label
  Vec work, ce(rows), z(rows);
  const double ce_scale = 1.0 / 3.0;
  auto loss = [&] {
    work = logits;
    cross_entropy_forward_backward(work.data(), ce.data(), z.data(), targets.data(), rows, V, ce_scale, z_scale, pool);
    double total = 0;
    for (int64_t r = 0; r < rows; ++r) total += ce_scale * ce[static_cast<size_t>(r)] + z_scale * z[static_cast<size_t>(r)];
    return total;
  };
  loss();
  const Vec grad = work;
  EXPECT_LT(fd_error(logits, grad, loss), kTol);
  if (z_scale == 0) {
    for (int64_t v = 0; v < V; ++v) EXPECT_EQ(grad[static_cast<size_t>(V + v)], 0.0) << "an ignored row has no gradient";
  }
}

TEST(TrainOps, CrossEntropyWithIgnoredLabelsMatchesFiniteDifferences) { check_cross_entropy(0.0, 9); }

TEST(TrainOps, ZLossMatchesFiniteDifferences) { check_cross_entropy(0.3, 10); }

TEST(TrainOps, EmbeddingBackwardSkipsThePaddingRow) {
  const std::vector<int32_t> ids{2, 0, 2, 1};
  Vec table(3 * 2, 0.0), dout{1, 2, 3, 4, 5, 6, 7, 8};
  embedding_backward(table.data(), dout.data(), ids.data(), 4, 2, 0);
  EXPECT_EQ(table, (Vec{0, 0, 7, 8, 6, 8}));
}

}  // namespace
}  // namespace baichuan::train
