// The medium matmul precision (kernels/matmul_precision.h): BF16 weights times activations rounded
// to bfloat16, on vdpbf16ps, against a double-precision reference of the same rounded values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "cli_runner.h"
#include "random_inputs.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/bf16_dot.h"
#include "kernels/cpu.h"
#include "kernels/matmul.h"
#include "kernels/matmul_precision.h"
#include "kernels/vec.h"

namespace baichuan::kernels {
namespace bf16_products_test {  // named, not anonymous: the tests compile as a unity build

bool vdpbf16ps_available() { return backend_supported(Backend::Avx512) && cpu_features().avx512bf16; }

using baichuan::testing::random_floats;

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  round_to_bf16(v.data(), out.data(), static_cast<int64_t>(v.size()));
  return out;
}

// Sets the precision (and the avx512 path) for a scope; puts back what was active.
class PrecisionScope {
 public:
  PrecisionScope(MatmulPrecision p, Backend b) : precision_(matmul_precision()), backend_(active_backend()) {
    set_matmul_precision(p);
    set_backend(b);
  }
  ~PrecisionScope() {
    set_matmul_precision(precision_);
    set_backend(backend_);
  }

 private:
  MatmulPrecision precision_;
  Backend backend_;
};

TEST(Bf16Products, RoundingIsToNearestEven) {
  const std::vector<float> x = {1.0f, std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u),
                                std::bit_cast<float>(0x3f808001u), -0.0f, INFINITY};
  const std::vector<uint16_t> want = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x8000, 0x7f80};
  EXPECT_EQ(to_bf16(x), want);
}

TEST(Bf16Products, TilesMatchDoubleReferenceForEveryShape) {
  for (int64_t n : {1, 2, 31, 32, 33, 64, 100, 257}) {
    // Rows one byte past an aligned address: rows of a mapped file sit anywhere.
    const auto w_f = random_floats(static_cast<size_t>(kTileRows * n), 3);
    const auto w_bf = to_bf16(w_f);
    std::vector<std::byte> w(w_bf.size() * 2 + 1);
    std::memcpy(w.data() + 1, w_bf.data(), w_bf.size() * 2);
    const auto x = to_bf16(random_floats(static_cast<size_t>(kTileTokens * n), 4));
    for (int nr = 1; nr <= kTileRows; ++nr)
      for (int nt = 1; nt <= kTileTokens; ++nt) {
        std::vector<float> ref(static_cast<size_t>(kTileTokens * kTileRows)), mag(ref.size());
        for (int t = 0; t < nt; ++t)
          for (int r = 0; r < nr; ++r) {
            double sum = 0, m = 0;
            for (int64_t i = 0; i < n; ++i) {
              const double p = static_cast<double>(bf16_to_f32(w_bf[r * n + i])) * bf16_to_f32(x[t * n + i]);
              sum += p;
              m += std::abs(p);
            }
            ref[t * kTileRows + r] = static_cast<float>(sum);
            mag[t * kTileRows + r] = static_cast<float>(m);
          }
        std::vector<float> s(ref.size()), v(ref.size());
        scalar::bf16_tile(w.data() + 1, static_cast<size_t>(n) * 2, nr, x.data(), nt, n, s.data(), kTileRows);
        if (vdpbf16ps_available())
          avx512::bf16_tile(w.data() + 1, static_cast<size_t>(n) * 2, nr, x.data(), nt, n, v.data(), kTileRows);
        for (int t = 0; t < nt; ++t)
          for (int r = 0; r < nr; ++r) {
            const size_t k = static_cast<size_t>(t * kTileRows + r);
            EXPECT_NEAR(s[k], ref[k], 1e-6 * mag[k] + 1e-7) << "scalar n=" << n << " " << nr << "x" << nt;
            if (vdpbf16ps_available()) {
              EXPECT_NEAR(v[k], ref[k], 1e-6 * mag[k] + 1e-7) << "avx512 n=" << n << " " << nr << "x" << nt;
            }
          }
      }
  }
}

// A BF16 matrix product at the medium precision: prompts use the rounded activations (and the
// rounding is visible: the float32 product differs), decoding keeps float32 activations, and the
// thread count does not change a bit.
TEST(Bf16Products, MediumPrecisionRoundsPromptActivationsOnly) {
  if (!vdpbf16ps_available()) GTEST_SKIP() << "this CPU lacks AVX-512 with AVX512_BF16";
  PrecisionScope scope(MatmulPrecision::Medium, Backend::Avx512);
  ASSERT_TRUE(bf16_products());
  ThreadPool one(1), three(3);
  for (auto [rows, cols, tokens] : {std::tuple{37, 53, 1}, {8, 32, 3}, {65, 100, 5}, {130, 257, 13}, {9, 4096, 7}}) {
    const auto w_bf = to_bf16(random_floats(static_cast<size_t>(rows * cols), 5, 0.1f));
    WeightMatrix w{.dtype = DType::BF16,
                   .data = reinterpret_cast<const std::byte*>(w_bf.data()),
                   .rows = rows,
                   .cols = cols,
                   .row_bytes = static_cast<size_t>(cols) * 2};
    const auto x = random_floats(static_cast<size_t>(tokens * cols), 6);
    std::vector<float> x_rounded(x.size());
    for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = bf16_to_f32(f32_to_bf16(x[i]));
    std::vector<float> exact(static_cast<size_t>(tokens * rows)), rounded(exact.size()), y1(exact.size()),
        y3(exact.size());
    matmul_reference(w, x.data(), tokens, exact.data(), rows);
    matmul_reference(w, x_rounded.data(), tokens, rounded.data(), rows);
    matmul(w, x.data(), tokens, y1.data(), rows, one);
    matmul(w, x.data(), tokens, y3.data(), rows, three);
    const auto& want = tokens == 1 ? exact : rounded;
    const auto& other = tokens == 1 ? rounded : exact;
    bool told_apart = false;
    for (size_t i = 0; i < want.size(); ++i) {
      const float tolerance = 1e-5f * (1 + std::abs(want[i]));
      EXPECT_NEAR(y1[i], want[i], tolerance) << rows << "x" << cols << " tokens " << tokens << " @" << i;
      EXPECT_EQ(y1[i], y3[i]) << "thread count changed the result at " << i;
      told_apart |= std::abs(y1[i] - other[i]) > tolerance;
    }
    EXPECT_TRUE(told_apart) << rows << "x" << cols << " tokens " << tokens
                            << ": the result does not show which activations were used";
  }
}

TEST(Bf16Products, UnknownPrecisionNameIsRefused) {
  setenv("BAICHUAN_MATMUL_PRECISION", "low", 1);
  auto run = baichuan::testing::baichuan_cli("--version");
  unsetenv("BAICHUAN_MATMUL_PRECISION");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("BAICHUAN_MATMUL_PRECISION=low: unknown precision (use highest or medium)"), std::string::npos)
      << run.err;
}

}  // namespace bf16_products_test
}  // namespace baichuan::kernels
