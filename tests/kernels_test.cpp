// Every kernel against a plain reference on random inputs of awkward sizes; SIMD against scalar.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>

#include "cli_runner.h"
#include "random_inputs.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/cpu.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/vec.h"

namespace baichuan::kernels {
namespace kernels_test {  // named, not anonymous: the tests compile as a unity build

const int64_t kSizes[] = {1, 2, 7, 8, 9, 31, 32, 33, 64, 100, 257, 1023};

using baichuan::testing::random_floats;

// Stores floats in `dtype` (F32/F16/BF16) and returns the bytes.
std::vector<std::byte> encode(DType dtype, const std::vector<float>& v) {
  size_t width = dtype == DType::F32 ? 4 : 2;
  std::vector<std::byte> out(v.size() * width);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(&out[4 * i], &v[i], 4);
    } else {
      uint16_t h = dtype == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

// Runs `check(name)` once with each backend this CPU can run made active (the plain kernel names
// dispatch to it), then restores the one that was active.
template <typename Check>
void on_every_backend(Check check) {
  const Backend saved = active_backend();
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512}) {
    if (!backend_supported(b)) continue;
    set_backend(b);
    check(backend_name(b));
  }
  set_backend(saved);
}

TEST(Kernels, DotMatchesDoubleReferenceOnEveryBackend) {
  for (int64_t n : kSizes) {
    auto a = random_floats(static_cast<size_t>(n), 1), b = random_floats(static_cast<size_t>(n), 2);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(a[i]) * b[i];
      mag += std::abs(static_cast<double>(a[i]) * b[i]);
    }
    on_every_backend([&](const std::string& backend) {
      EXPECT_NEAR(dot_f32(a.data(), b.data(), n), ref, 1e-6 * mag + 1e-7) << backend << " n=" << n;
    });
  }
}

TEST(Kernels, StoredRowDotAndAxpyMatchReferenceOnEveryBackend) {
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t n : kSizes) {
      auto w = random_floats(static_cast<size_t>(n), 11), x = random_floats(static_cast<size_t>(n), 12);
      auto bytes = encode(dtype, w);
      double ref = 0, mag = 0;
      std::vector<float> axpy_ref(x);
      for (int64_t i = 0; i < n; ++i) {
        const float wi = load_float(dtype, bytes.data(), static_cast<size_t>(i));
        double p = static_cast<double>(wi) * x[i];
        ref += p;
        mag += std::abs(p);
        axpy_ref[i] = std::fma(0.75f, wi, x[i]);
      }
      on_every_backend([&](const std::string& backend) {
        EXPECT_NEAR(dot_row(dtype, bytes.data(), x.data(), n), ref, 1e-6 * mag + 1e-7)
            << backend << " " << dtype_name(dtype) << " n=" << n;
        std::vector<float> y(x);
        axpy_row(dtype, bytes.data(), 0.75f, y.data(), n);
        for (int64_t i = 0; i < n; ++i)
          EXPECT_NEAR(y[i], axpy_ref[i], 1e-6f * (1 + std::abs(axpy_ref[i])))
              << backend << " " << dtype_name(dtype) << " n=" << n << " element " << i;
      });
    }
  }
}

TEST(Kernels, RowConversionIsBitExactAcrossBackends) {
  std::mt19937 rng(3);
  for (DType dtype : {DType::F16, DType::BF16, DType::F32}) {
    for (int64_t n : kSizes) {
      std::vector<std::byte> raw(static_cast<size_t>(n) * (dtype == DType::F32 ? 4 : 2));
      for (auto& b : raw) b = static_cast<std::byte>(rng());
      std::vector<float> s(static_cast<size_t>(n));
      scalar::row_to_f32(dtype, raw.data(), s.data(), n);
      on_every_backend([&](const std::string& backend) {
        std::vector<float> v(static_cast<size_t>(n) + 1, 7.0f);  // one past the end: must stay untouched
        row_to_f32(dtype, raw.data(), v.data(), n);
        EXPECT_EQ(v[static_cast<size_t>(n)], 7.0f) << backend << " wrote past the row";
        for (int64_t i = 0; i < n; ++i) {
          if (std::isnan(s[i])) {
            EXPECT_TRUE(std::isnan(v[i]));
          } else {
            EXPECT_EQ(std::memcmp(&s[i], &v[i], 4), 0)
                << backend << " " << dtype_name(dtype) << " element " << i << ": " << s[i] << " vs " << v[i];
          }
        }
      });
    }
  }
}

class MatmulTest : public ::testing::TestWithParam<std::tuple<DType, Backend>> {};

TEST_P(MatmulTest, MatchesReferenceForAwkwardShapesAndThreadCounts) {
  auto [dtype, backend] = GetParam();
  if (!backend_supported(backend)) GTEST_SKIP() << "this CPU cannot run the " << backend_name(backend) << " kernels";
  Backend saved = active_backend();
  set_backend(backend);
  ThreadPool one(1), three(3);
  for (auto [rows, cols, tokens] : {std::tuple{1, 1, 1}, {37, 53, 1}, {8, 32, 3}, {65, 100, 5}, {130, 257, 2}, {12, 40, 13}, {9, 17, 6}}) {
    auto w_f = random_floats(static_cast<size_t>(rows * cols), 4, 0.1f);
    auto bytes = encode(dtype, w_f);
    WeightMatrix w{.dtype = dtype,
                   .data = bytes.data(),
                   .rows = rows,
                   .cols = cols,
                   .row_bytes = static_cast<size_t>(cols) * (dtype == DType::F32 ? 4 : 2)};
    auto x = random_floats(static_cast<size_t>(tokens * cols), 5);
    std::vector<float> ref(static_cast<size_t>(tokens * rows)), y1(ref.size()), y3(ref.size());
    matmul_reference(w, x.data(), tokens, ref.data(), rows);
    matmul(w, x.data(), tokens, y1.data(), rows, one);
    matmul(w, x.data(), tokens, y3.data(), rows, three);
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_NEAR(y1[i], ref[i], 1e-5f * (1 + std::abs(ref[i]))) << rows << "x" << cols << " @" << i;
      EXPECT_EQ(y1[i], y3[i]) << "thread count changed the result at " << i;
    }
  }
  set_backend(saved);
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTest,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F16, DType::BF16),
                                            ::testing::Values(Backend::Scalar, Backend::Avx2, Backend::Avx512)));

// `baichuan --version` with BAICHUAN_CPU set in its environment.
baichuan::testing::CliRun version_with_cpu(const std::string& name) {
  setenv("BAICHUAN_CPU", name.c_str(), 1);
  auto run = baichuan::testing::baichuan_cli("--version");
  unsetenv("BAICHUAN_CPU");
  return run;
}

// BAICHUAN_CPU forces a lower path; one the CPU lacks, or an unknown name, is refused with a message.
TEST(KernelBackend, EnvironmentForcesAPathTheCpuCanRun) {
  EXPECT_LE(best_backend(), Backend::Avx512);
  EXPECT_TRUE(backend_supported(Backend::Scalar));
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512}) {
    const auto run = version_with_cpu(backend_name(b));
    if (backend_supported(b)) {
      EXPECT_EQ(run.exit_code, 0) << run.err;
      EXPECT_NE(run.out.find("-> " + backend_name(b) + " kernels"), std::string::npos) << run.out;
      EXPECT_EQ(run.out.find("forced") != std::string::npos, b != best_backend()) << run.out;
      EXPECT_EQ(run.out.find("the best path") != std::string::npos, b == best_backend()) << run.out;
      // The flags seen are named whichever path runs.
      EXPECT_EQ(run.out.find("AVX2 ") != std::string::npos, cpu_features().avx2) << run.out;
      EXPECT_EQ(run.out.find("AVX512_VNNI ") != std::string::npos, cpu_features().avx512vnni) << run.out;
    } else {
      EXPECT_EQ(run.exit_code, 1);
      EXPECT_NE(run.err.find("BAICHUAN_CPU=" + backend_name(b) + ": this CPU lacks"), std::string::npos) << run.err;
    }
  }
  const auto unknown = version_with_cpu("sse9");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("BAICHUAN_CPU=sse9: unknown kernel path (use scalar, avx2 or avx512)"), std::string::npos)
      << unknown.err;
}

TEST(Kernels, RmsNormMatchesReference) {
  for (int64_t n : kSizes) {
    auto x = random_floats(static_cast<size_t>(n), 6), w = random_floats(static_cast<size_t>(n), 7);
    Tensor weight;
    weight.dtype = DType::F32;
    weight.shape = {n};
    weight.data = reinterpret_cast<const std::byte*>(w.data());
    std::vector<float> out(static_cast<size_t>(n));
    rms_norm(x.data(), weight, 1e-6f, out.data(), n);
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(out[i], w[i] * x[i] * inv, 1e-5 * (1 + std::abs(w[i] * x[i] * inv)));
  }
}

// The official Baichuan 2 13B definition (_get_interleave), written recursively as in the release.
std::vector<double> official_slopes(int64_t n) {
  auto power_of_2 = [](int64_t m) {
    double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(m)) - 3)));
    std::vector<double> s;
    for (int64_t i = 0; i < m; ++i) s.push_back(start * std::pow(start, static_cast<double>(i)));
    return s;
  };
  double l = std::log2(static_cast<double>(n));
  if (l == std::floor(l)) return power_of_2(n);
  int64_t closest = static_cast<int64_t>(std::pow(2.0, std::floor(l)));
  auto s = power_of_2(closest);
  auto extra = official_slopes(2 * closest);
  for (int64_t i = 0; i < n - closest; ++i) s.push_back(extra[static_cast<size_t>(2 * i)]);
  return s;
}

TEST(Kernels, AlibiSlopesMatchTheOfficialDefinitionForAnyHeadCount) {
  for (int64_t n = 1; n <= 64; ++n) {
    auto ours = alibi_slopes(n, 8.0f);
    auto ref = official_slopes(n);
    ASSERT_EQ(ours.size(), ref.size());
    for (size_t h = 0; h < ref.size(); ++h) EXPECT_FLOAT_EQ(ours[h], static_cast<float>(ref[h])) << n << " heads, head " << h;
  }
}

TEST(Kernels, RopeInterleavedOnPermutedRowsEqualsRotateHalf) {
  const int64_t d = 16;
  auto inv = rope_inv_freq(d, 10000.0f);
  auto x = random_floats(d, 8);
  std::vector<float> permuted(d);
  for (int64_t i = 0; i < d / 2; ++i) {
    permuted[2 * i] = x[i];
    permuted[2 * i + 1] = x[i + d / 2];
  }
  std::vector<float> rotation(d);
  for (int64_t pos : {0, 1, 17, 4095}) {
    auto a = x, b = permuted;
    rope_rotation(pos, inv, rotation.data());
    apply_rope(a.data(), d, rotation.data(), false);
    apply_rope(b.data(), d, rotation.data(), true);
    for (int64_t i = 0; i < d / 2; ++i) {
      EXPECT_EQ(a[i], b[2 * i]);
      EXPECT_EQ(a[i + d / 2], b[2 * i + 1]);
    }
    // Rotation keeps each pair's length.
    for (int64_t i = 0; i < d / 2; ++i)
      EXPECT_NEAR(std::hypot(a[i], a[i + d / 2]), std::hypot(x[i], x[i + d / 2]), 1e-5);
  }
  // Position 0 is the identity.
  auto a = x;
  rope_rotation(0, inv, rotation.data());
  apply_rope(a.data(), d, rotation.data(), false);
  EXPECT_EQ(a, x);
}

TEST(Kernels, SoftmaxAndSiluMatchReference) {
  for (int64_t n : kSizes) {
    auto x = random_floats(static_cast<size_t>(n), 9, 5.0f);
    auto s = x;
    softmax_inplace(s.data(), n);
    double max = *std::max_element(x.begin(), x.end()), sum = 0;
    for (float v : x) sum += std::exp(v - max);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(s[i], std::exp(x[i] - max) / sum, 1e-5 * s[i] + 1e-9);
    auto up = random_floats(static_cast<size_t>(n), 10);
    std::vector<float> out(static_cast<size_t>(n));
    silu_mul(x.data(), up.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(out[i], x[i] / (1 + std::exp(-static_cast<double>(x[i]))) * up[i], 1e-5 * (1 + std::abs(out[i])));
  }
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 64, 1000}) {
      for (int64_t grain : {1, 8, 32}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
          EXPECT_TRUE(b % grain == 0 || b == n);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        }, grain);
        for (auto& h : hits) EXPECT_EQ(h.load(), 1);
      }
    }
  }
}

}  // namespace
}  // namespace baichuan::kernels
