// NF4 rows against float activations (kernels/nf4_dot.h): every backend's weights are the dequantized
// ones bit for bit (quant::dequantize_row is the independent reference), dot products are exact where
// float32 arithmetic is exact and within the float32 summation bound elsewhere, and matrix products
// do not depend on the number of threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu.h"
#include "kernels/matmul.h"
#include "kernels/nf4_dot.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "random_inputs.h"

namespace baichuan::kernels {
namespace nf4_dot_test {  // named, not anonymous: the tests compile as a unity build
using baichuan::testing::random_floats;

constexpr size_t kBlockBytes = sizeof(quant::block_nf4);

// The backends this CPU can run, each with its own kernels (the plain names dispatch among them).
struct Nf4Backend {
  const char* name;
  float (*dot)(const std::byte*, const float*, int64_t);
  void (*to_f32)(const std::byte*, float*, int64_t);
};

std::vector<Nf4Backend> nf4_backends() {
  std::vector<Nf4Backend> b = {{"scalar", scalar::nf4_dot_row, scalar::nf4_row_to_f32}};
  if (backend_supported(Backend::Avx2)) b.push_back({"avx2", avx2::nf4_dot_row, avx2::nf4_row_to_f32});
  if (backend_supported(Backend::Avx512)) b.push_back({"avx512", avx512::nf4_dot_row, avx512::nf4_row_to_f32});
  return b;
}

// nb random blocks (every code byte random) with scales from `scale(rng, i)`, one byte further than
// an aligned buffer would put them (rows of a mapped file sit at any address).
template <typename Scale>
std::vector<std::byte> nf4_blocks(int64_t nb, uint32_t seed, Scale scale) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(static_cast<size_t>(nb) * kBlockBytes + 1);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  for (int64_t i = 0; i < nb; ++i) {
    const float d = scale(rng, i);
    std::memcpy(out.data() + 1 + static_cast<size_t>(i) * kBlockBytes, &d, 4);
  }
  return out;
}

std::vector<float> dequantized(const std::byte* row, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  quant::dequantize_row(DType::NF4, row, w.data(), n);
  return w;
}

TEST(Nf4Dot, WeightsAreTheDequantizedOnesBitForBit) {
  // Scales over the float16 range's edges: results that are float16 subnormals, that overflow to
  // infinity, zero and negative scales, and ordinary ones.
  const float scales[] = {0.0f, 1.0f, 0.05f, -0.3f, 3e-6f, 1e-7f, 6e-8f, 70000.0f, 65504.0f, 1e-3f, 123.456f};
  auto pick = [&](std::mt19937& rng, int64_t i) {
    return i < 11 ? scales[i] : std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
  };
  for (int64_t nb : {1, 11, 64, 172}) {
    const auto blocks = nf4_blocks(nb, 17 + static_cast<uint32_t>(nb), pick);
    const int64_t n = nb * quant::kNf4BlockElems;
    const std::vector<float> expected = dequantized(blocks.data() + 1, n);
    for (const Nf4Backend& b : nf4_backends()) {
      SCOPED_TRACE(::testing::Message() << b.name << " n=" << n);
      std::vector<float> got(static_cast<size_t>(n), -1.0f);
      b.to_f32(blocks.data() + 1, got.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * 4), 0);
    }
  }
}

// Scales 1/2 and 1, activations small integers: every weight is a multiple of 2^-15 below 1 and
// every partial sum of 128 products a multiple of 2^-15 below 2^9, so float32 holds each exactly and
// any summation order gives the double-precision sum. Codes cycle so that every code meets every
// position of a block.
TEST(Nf4Dot, ExactWhereFloat32IsExact) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-4, 4);
  for (int shift = 0; shift < 16; ++shift) {
    auto blocks = nf4_blocks(2, 100 + static_cast<uint32_t>(shift), [](std::mt19937&, int64_t i) { return i == 0 ? 0.5f : 1.0f; });
    for (size_t i = 0; i < 2; ++i)
      for (int j = 0; j < 32; ++j)
        blocks[1 + i * kBlockBytes + 4 + static_cast<size_t>(j)] =
            static_cast<std::byte>(((j + shift) % 16) | ((j * 7 + shift + 3) % 16) << 4);
    std::vector<float> x(128);
    for (auto& v : x) v = static_cast<float>(small(rng));
    const std::vector<float> w = dequantized(blocks.data() + 1, 128);
    double expected = 0;
    for (size_t i = 0; i < 128; ++i) expected += double{w[i]} * x[i];
    for (const Nf4Backend& b : nf4_backends()) EXPECT_EQ(b.dot(blocks.data() + 1, x.data(), 128), expected) << b.name << " shift " << shift;
  }
}

// Long rows (Baichuan 2's widths) with random scales and activations: every backend within the
// float32 summation bound n * 2^-24 * sum |w x| of the double-precision dot of the dequantized weights.
TEST(Nf4Dot, LongRowsWithinTheSummationBound) {
  for (int64_t n : {int64_t{4096}, int64_t{11008}, int64_t{13696}}) {
    const int64_t nb = n / quant::kNf4BlockElems;
    const auto blocks = nf4_blocks(nb, static_cast<uint32_t>(n), [](std::mt19937& rng, int64_t) {
      return std::uniform_real_distribution<float>(0.01f, 0.1f)(rng);
    });
    const auto x = random_floats(static_cast<size_t>(n), 3 + static_cast<uint32_t>(n));
    const std::vector<float> w = dequantized(blocks.data() + 1, n);
    double expected = 0, magnitude = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      expected += double{w[i]} * x[i];
      magnitude += std::abs(double{w[i]} * x[i]);
    }
    const double bound = static_cast<double>(n) * std::ldexp(1.0, -24) * magnitude;
    for (const Nf4Backend& b : nf4_backends())
      EXPECT_NEAR(b.dot(blocks.data() + 1, x.data(), n), expected, bound) << b.name << " n=" << n;
  }
}

TEST(Nf4Dot, PartialBlocksAreErrors) {
  std::vector<std::byte> row(2 * kBlockBytes);
  std::vector<float> x(128);
  for (const Nf4Backend& b : nf4_backends()) {
    for (int64_t n : {int64_t{96}, int64_t{-64}, int64_t{1}}) {
      EXPECT_THROW(b.dot(row.data(), x.data(), n), Error) << b.name << " " << n;
      EXPECT_THROW(b.to_f32(row.data(), x.data(), n), Error) << b.name << " " << n;
    }
    EXPECT_EQ(b.dot(row.data(), x.data(), 0), 0.0f);
  }
}

// Matrix products of NF4 weights (one token: the row kernel; several: rows widened to floats and
// float tiles) within the summation bound of the double-precision product of the dequantized
// weights, and the same bits with one thread and with two, under every backend.
TEST(Nf4Dot, MatmulMatchesTheReferenceAndIgnoresThreadCount) {
  const int64_t rows = 40, cols = 256;
  const auto blocks = nf4_blocks(rows * cols / quant::kNf4BlockElems, 9, [](std::mt19937& rng, int64_t) {
    return std::uniform_real_distribution<float>(0.01f, 0.1f)(rng);
  });
  const WeightMatrix w{.dtype = DType::NF4, .data = blocks.data() + 1, .rows = rows, .cols = cols,
                       .row_bytes = static_cast<size_t>(cols / quant::kNf4BlockElems) * kBlockBytes};
  const Backend saved = active_backend();
  ThreadPool one(1), two(2);
  for (int64_t tokens : {int64_t{1}, int64_t{5}}) {
    const auto x = random_floats(static_cast<size_t>(tokens * cols), 11 + static_cast<uint32_t>(tokens));
    std::vector<double> expected(static_cast<size_t>(tokens * rows)), bound(expected.size());
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> wr = dequantized(w.row(r), cols);
      for (int64_t t = 0; t < tokens; ++t) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < cols; ++i) {
          sum += double{wr[static_cast<size_t>(i)]} * x[static_cast<size_t>(t * cols + i)];
          magnitude += std::abs(double{wr[static_cast<size_t>(i)]} * x[static_cast<size_t>(t * cols + i)]);
        }
        expected[static_cast<size_t>(t * rows + r)] = sum;
        bound[static_cast<size_t>(t * rows + r)] = static_cast<double>(cols) * std::ldexp(1.0, -24) * magnitude;
      }
    }
    for (Backend backend : {Backend::Scalar, Backend::Avx2, Backend::Avx512}) {
      if (!backend_supported(backend)) continue;
      set_backend(backend);
      SCOPED_TRACE(::testing::Message() << backend_name(backend) << ", " << tokens << " tokens");
      std::vector<float> y1(expected.size()), y2(expected.size());
      matmul(w, x.data(), tokens, y1.data(), rows, one);
      matmul(w, x.data(), tokens, y2.data(), rows, two);
      EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0);
      for (size_t i = 0; i < y1.size(); ++i) EXPECT_NEAR(y1[i], expected[i], bound[i]) << i;
    }
  }
  set_backend(saved);
}

}  // namespace nf4_dot_test
}  // namespace baichuan::kernels
