// accumulate_products (train/grad_kernels.h): the scalar reference against float64 sums, and every
// SIMD path this CPU runs bit-identical to the scalar reference (each element is one fused
// multiply-add chain in order of k, whatever the tile, the packing or the blocking), on shapes that
// leave every remainder of the tiles (4 x 16, 8 x 32) and cross every block (k 128, rows 256,
// columns 1024), with a and b read row-major or transposed.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu.h"
#include "train/grad_kernels.h"

namespace baichuan::train {
namespace grad_kernels_test {  // named, not anonymous: the tests compile as a unity build

struct ProductCase {
  int64_t rows, K, cols;
  bool a_transposed, b_transposed;
};

// The operands of one case, laid out as the flags say, and y with a gap of sentinels past cols.
struct ProductOperands {
  std::vector<float> a, b, y;
  StridedMatrix av{}, bv{};
  int64_t y_stride = 0;
};

constexpr float kSentinel = -7.25f;
constexpr int64_t kGap = 3;  // columns of y past cols that must stay untouched

ProductOperands make_operands(const ProductCase& c, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ProductOperands o;
  o.a.resize(static_cast<size_t>(c.rows * c.K));
  o.b.resize(static_cast<size_t>(c.K * c.cols));
  for (float& v : o.a) v = normal(rng);
  for (float& v : o.b) v = normal(rng);
  o.av = c.a_transposed ? StridedMatrix{o.a.data(), 1, c.rows} : StridedMatrix{o.a.data(), c.K, 1};
  o.bv = c.b_transposed ? StridedMatrix{o.b.data(), 1, c.K} : StridedMatrix{o.b.data(), c.cols, 1};
  o.y_stride = c.cols + kGap;
  o.y.assign(static_cast<size_t>(c.rows * o.y_stride), kSentinel);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t col = 0; col < c.cols; ++col) o.y[static_cast<size_t>(r * o.y_stride + col)] = normal(rng);
  return o;
}

std::vector<ProductCase> remainder_cases() {
  std::vector<ProductCase> cases;
  for (int64_t rows : {1, 3, 4, 5, 8, 9, 15})
    for (int64_t cols : {1, 7, 8, 15, 16, 17, 31, 32, 33, 47})
      for (int64_t K : {1, 6, 129})
        cases.push_back({rows, K, cols, (rows + cols) % 2 == 0, (rows + K) % 2 == 1});
  // Across the row block (256) and the column block (1024), each layout.
  for (bool at : {false, true})
    for (bool bt : {false, true}) {
      cases.push_back({261, 40, 35, at, bt});
      cases.push_back({9, 20, 1030, at, bt});
    }
  cases.push_back({17, 300, 70, false, false});  // three blocks of k
  return cases;
}

std::string describe(const ProductCase& c) {
  return "rows " + std::to_string(c.rows) + ", K " + std::to_string(c.K) + ", cols " + std::to_string(c.cols) +
         (c.a_transposed ? ", a transposed" : "") + (c.b_transposed ? ", b transposed" : "");
}

TEST(GradKernels, ScalarReferenceMatchesDoubleSums) {
  std::mt19937 rng(11);
  for (const ProductCase& c : {ProductCase{5, 37, 9, false, false}, ProductCase{6, 200, 19, true, true}}) {
    ProductOperands o = make_operands(c, rng);
    const std::vector<float> y0 = o.y;
    scalar::accumulate_products(o.y.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.cols + kGap; ++col) {
        const auto i = static_cast<size_t>(r * o.y_stride + col);
        if (col >= c.cols) {
          EXPECT_EQ(o.y[i], kSentinel);
          continue;
        }
        double sum = y0[i];
        for (int64_t k = 0; k < c.K; ++k) sum += static_cast<double>(o.av.at(r, k)) * o.bv.at(k, col);
        EXPECT_NEAR(o.y[i], sum, 1e-4 * std::sqrt(static_cast<double>(c.K))) << describe(c);
      }
  }
}

// A chain of fused multiply-adds differs from a multiply then an add in the last bits: the
// reference must be the former, or no SIMD tile could match it bit for bit.
TEST(GradKernels, ScalarReferenceFusesEachTerm) {
  // a * a = 1 + 2^-11 + 2^-24: rounded to a float (spacing 2^-23 above 1) it is 1 + 2^-11.
  const float a = 1.0f + 0x1p-12f;
  float out = -(1.0f + 0x1p-11f);
  scalar::accumulate_products(&out, 1, StridedMatrix{&a, 1, 1}, StridedMatrix{&a, 1, 1}, 1, 1, 1);
  EXPECT_EQ(out, 0x1p-24f);  // unfused, the sum would be 0
}

TEST(GradKernels, EverySimdPathIsBitIdenticalToScalar) {
  const bool avx2 = kernels::backend_supported(kernels::Backend::Avx2);
  const bool avx512 = kernels::backend_supported(kernels::Backend::Avx512);
  if (!avx2) GTEST_SKIP() << "this CPU has no AVX2/FMA: only the scalar path runs";
  std::mt19937 rng(12);
  int compared = 0;
  for (const ProductCase& c : remainder_cases()) {
    const ProductOperands o = make_operands(c, rng);
    std::vector<float> expected = o.y;
    scalar::accumulate_products(expected.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
    std::vector<float> got = o.y;
    avx2::accumulate_products(got.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
    ASSERT_EQ(got, expected) << "avx2, " << describe(c);
    if (avx512) {
      got = o.y;
      avx512::accumulate_products(got.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
      ASSERT_EQ(got, expected) << "avx512, " << describe(c);
    }
    ++compared;
  }
  EXPECT_GT(compared, 200);
}

// The dispatcher follows the backend (BAICHUAN_CPU / set_backend): forcing each one gives the same bits.
TEST(GradKernels, DispatchGivesTheSameBitsOnEveryBackend) {
  std::mt19937 rng(13);
  const ProductCase c{13, 150, 45, true, false};
  const ProductOperands o = make_operands(c, rng);
  std::vector<float> expected = o.y;
  scalar::accumulate_products(expected.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
  const kernels::Backend initial = kernels::active_backend();
  for (auto backend : {kernels::Backend::Scalar, kernels::Backend::Avx2, kernels::Backend::Avx512}) {
    if (!kernels::backend_supported(backend)) continue;
    kernels::set_backend(backend);
    std::vector<float> got = o.y;
    accumulate_products(got.data(), o.y_stride, o.av, o.bv, c.rows, c.K, c.cols);
    EXPECT_EQ(got, expected) << kernels::backend_name(backend);
  }
  kernels::set_backend(initial);
}

}  // namespace grad_kernels_test
}  // namespace baichuan::train
