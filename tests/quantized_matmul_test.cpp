// Quantized matrix products (file layout and packed) against a double-precision reference over the
// same quantized numbers: weights dequantized, activations as the kernels quantized them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant_dot.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace baichuan::kernels {
namespace quantized_matmul_test {  // named, not anonymous: the tests compile as a unity build

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct Quantized {
  std::vector<std::byte> bytes;
  WeightMatrix matrix;
};

Quantized quantize_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  auto w = random_floats(static_cast<size_t>(rows * cols), seed);
  Quantized q;
  const size_t row_bytes = dtype_info(type).block_bytes * static_cast<size_t>(cols) / dtype_info(type).block_elems;
  q.bytes.resize(row_bytes * static_cast<size_t>(rows) + 1);
  std::byte* data = q.bytes.data() + 1;  // odd address, as in a memory-mapped file
  for (int64_t r = 0; r < rows; ++r) quant::quantize_row(type, w.data() + r * cols, data + r * row_bytes, cols);
  q.matrix = {.dtype = type, .data = data, .rows = rows, .cols = cols, .row_bytes = row_bytes};
  return q;
}

// The activations of one token as the kernels for weights of `type` quantize them, as floats.
std::vector<float> quantized_activations(DType type, const float* x, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  auto expand = [&](auto block) {  // one ActBlock32 or ActBlock256 type
    constexpr int64_t kElems = sizeof(block.qs);
    std::vector<decltype(block)> blocks(static_cast<size_t>(n / kElems));
    scalar::quantize_activations(type, x, n, blocks.data());
    for (int64_t i = 0; i < n; ++i) {
      const auto& b = blocks[static_cast<size_t>(i / kElems)];
      out[static_cast<size_t>(i)] = b.d * b.qs[i % kElems];
    }
  };
  if (activation_kind(type) == ActivationKind::Blocks32) expand(ActBlock32{});
  else expand(ActBlock256{});
  return out;
}

// y = W x in double over the dequantized weights and the activations as the kernels quantize them.
std::vector<double> reference(const WeightMatrix& w, const std::vector<float>& x, int64_t tokens,
                              std::vector<double>& magnitude) {
  std::vector<float> xq(x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    auto q = quantized_activations(w.dtype, x.data() + t * w.cols, w.cols);
    std::copy(q.begin(), q.end(), xq.begin() + t * w.cols);
  }
  std::vector<double> y(static_cast<size_t>(tokens * w.rows));
  magnitude.assign(y.size(), 0.0);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    quant::dequantize_row(w.dtype, w.row(r), row.data(), w.cols);
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0, mag = 0;
      for (int64_t i = 0; i < w.cols; ++i) {
        double term = static_cast<double>(row[static_cast<size_t>(i)]) * xq[static_cast<size_t>(t * w.cols + i)];
        sum += term;
        mag += std::abs(term);
      }
      y[static_cast<size_t>(t * w.rows + r)] = sum;
      magnitude[static_cast<size_t>(t * w.rows + r)] = mag;
    }
  }
  return y;
}

class QuantizedMatmulTest : public ::testing::TestWithParam<std::tuple<DType, Backend>> {};

TEST_P(QuantizedMatmulTest, MatchesReferenceInBothLayoutsAndAnyThreadCount) {
  auto [type, backend] = GetParam();
  if (!backend_supported(backend)) GTEST_SKIP() << "this CPU cannot run the " << backend_name(backend) << " kernels";
  Backend saved = active_backend();
  set_backend(backend);
  ThreadPool one(1), three(3);
  // Rows: a multiple of 8 (packed) and not (file layout); tokens around the 4-token tile. Shapes
  // with fewer columns than a block of the type are skipped (K-quants need multiples of 256).
  for (auto [rows, cols, tokens] : {std::tuple{8, 32, 1}, {24, 96, 3}, {40, 256, 4}, {16, 512, 5}, {136, 64, 9},
                                    {13, 64, 2}, {129, 128, 6}, {8, 256, 1}, {16, 512, 3}, {24, 768, 4},
                                    {40, 256, 5}, {16, 1024, 9}, {21, 512, 3}}) {
    if (cols % dtype_info(type).block_elems != 0) continue;
    auto q = quantize_matrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
    auto x = random_floats(static_cast<size_t>(tokens * cols), static_cast<uint32_t>(cols + tokens));
    std::vector<double> magnitude;
    auto ref = reference(q.matrix, x, tokens, magnitude);

    std::vector<float> y1(ref.size()), y3(ref.size());
    matmul(q.matrix, x.data(), tokens, y1.data(), rows, one);
    const bool packable = can_pack(q.matrix);
    WeightMatrix w = q.matrix;
    std::optional<PackedMatrix> packed;
    if (packable) {
      packed.emplace(q.matrix, three);
      w = packed->view();
      EXPECT_EQ(w.layout, Layout::Interleaved8);
    }
    std::vector<float> yp1(ref.size()), yp3(ref.size());
    matmul(w, x.data(), tokens, yp1.data(), rows, one);
    matmul(w, x.data(), tokens, yp3.data(), rows, three);
    matmul(q.matrix, x.data(), tokens, y3.data(), rows, three);
    for (size_t i = 0; i < ref.size(); ++i) {
      const double tol = 2e-6 * (magnitude[i] + 1e-6);
      EXPECT_NEAR(y1[i], ref[i], tol) << dtype_name(type) << " " << rows << "x" << cols << " t" << tokens << " @" << i;
      EXPECT_NEAR(yp1[i], ref[i], tol) << "packed " << dtype_name(type) << " " << rows << "x" << cols << " @" << i;
      EXPECT_EQ(y1[i], y3[i]) << "thread count changed the result at " << i;
      EXPECT_EQ(yp1[i], yp3[i]) << "thread count changed the packed result at " << i;
    }
  }
  set_backend(saved);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedMatmulTest,
                         ::testing::Combine(::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                                              DType::Q5_1, DType::Q4_K, DType::Q6_K),
                                            ::testing::Values(Backend::Scalar, Backend::Avx2, Backend::Avx512)),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) + "_" + backend_name(std::get<1>(info.param));
                         });

// The bytes of every block other than its f16 scales replaced by random bytes: Q8_0 codes over all
// of -128..127, Q4_0 every nibble, Q4_K every 6-bit scale and min, Q6_K every code and int8 scale
// (-128 too); and activations with some blocks at full scale (codes +-127).
Quantized random_codes(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  Quantized q = quantize_matrix(type, rows, cols, seed);
  std::mt19937 rng(seed);
  const size_t block = dtype_info(type).block_bytes;
  // [first, last) of a block's bytes that are not f16 scales.
  const auto [first, last] = type == DType::Q4_K   ? std::pair<size_t, size_t>{4, block}           // d, dmin first
                             : type == DType::Q6_K ? std::pair<size_t, size_t>{0, block - 2}       // d last
                                                   : std::pair<size_t, size_t>{2, block};          // d first
  for (int64_t r = 0; r < rows; ++r)
    for (size_t b = 0; b < q.matrix.row_bytes / block; ++b)
      for (size_t i = first; i < last; ++i) const_cast<std::byte*>(q.matrix.row(r))[b * block + i] = static_cast<std::byte>(rng());
  return q;
}

std::vector<float> extreme_floats(size_t n, uint32_t seed) {
  auto x = random_floats(n, seed);
  for (size_t i = 0; i < n; i += 7) x[i] = (i / 7) % 2 ? 100.0f : -100.0f;  // many codes at +-127
  return x;
}

// AVX-512 tiles (16 rows x up to 4 tokens, VNNI; Q4_0, Q8_0, Q4_K, Q6_K) give the same bits as the AVX2 tiles, which the
// test above holds to the reference: exact integer block sums, the same float steps in the same
// order. Shapes cover odd numbers of groups (a thread's last group runs on AVX2), one and several
// token tiles, and 1..3 threads (with several threads, small matrices are cut into chunks of single
// groups that run on AVX2: the 1-thread runs are the ones exercising the AVX-512 tiles here).
TEST(PackedMatmulAvx512, SameBitsAsAvx2ForEveryTileWidthAndThreadSplit) {
  if (!backend_supported(Backend::Avx512))
    GTEST_SKIP() << "this CPU lacks AVX-512 F/BW/VL/DQ/VNNI: the avx512 kernels are not run here";
  const Backend saved = active_backend();
  ThreadPool one(1), two(2), three(3);
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K})
    for (bool extreme : {false, true})
      for (auto [rows, cols, tokens] : {std::tuple{8, 32, 1}, {16, 64, 1}, {24, 96, 2}, {40, 256, 3}, {136, 128, 4},
                                        {56, 512, 5}, {128, 1024, 8}, {264, 256, 9}, {72, 4096, 1}, {48, 64, 17},
                                        {24, 768, 6}, {32, 256, 17}}) {
        if (cols % dtype_info(type).block_elems != 0) continue;  // K-quants: multiples of 256
        const auto seed = static_cast<uint32_t>(rows * 7 + cols + tokens);
        auto q = extreme ? random_codes(type, rows, cols, seed) : quantize_matrix(type, rows, cols, seed);
        auto x = extreme ? extreme_floats(static_cast<size_t>(tokens * cols), seed + 1)
                         : random_floats(static_cast<size_t>(tokens * cols), seed + 1);
        set_backend(Backend::Avx2);
        PackedMatrix packed(q.matrix, two);
        const WeightMatrix w = packed.view();
        std::vector<float> expected(static_cast<size_t>(tokens * rows)), y(expected.size());
        matmul(w, x.data(), tokens, expected.data(), rows, one);
        set_backend(Backend::Avx512);
        for (ThreadPool* pool : {&one, &two, &three}) {
          std::fill(y.begin(), y.end(), 0.0f);
          matmul(w, x.data(), tokens, y.data(), rows, *pool);
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_EQ(std::memcmp(&y[i], &expected[i], sizeof(float)), 0)
                << dtype_name(type) << (extreme ? " extreme codes " : " ") << rows << "x" << cols << " t" << tokens << " threads "
                << pool->size() << " @" << i << ": " << y[i] << " vs " << expected[i];
        }
      }
  set_backend(saved);
}

// Against the reference with every Q8_0 code (every K-quant scale) and full-scale activations (the
// test above shows the same bits as AVX2; this one does not lean on the AVX2 path).
TEST(PackedMatmulAvx512, ExtremeCodesMatchReference) {
  if (!backend_supported(Backend::Avx512))
    GTEST_SKIP() << "this CPU lacks AVX-512 F/BW/VL/DQ/VNNI: the avx512 kernels are not run here";
  const Backend saved = active_backend();
  set_backend(Backend::Avx512);
  // One thread: the pool cuts work into up to 4 chunks per thread, so 5 groups over 2 threads are
  // single groups, which all run the AVX2 tile; one thread runs pairs (0, 1), (2, 3) on AVX-512.
  ThreadPool one(1);
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t rows = 40, cols = 512, tokens = 6;
    auto q = random_codes(type, rows, cols, 11);
    auto x = extreme_floats(static_cast<size_t>(tokens * cols), 12);
    std::vector<double> magnitude;
    auto ref = reference(q.matrix, x, tokens, magnitude);
    PackedMatrix packed(q.matrix, one);
    std::vector<float> y(ref.size());
    matmul(packed.view(), x.data(), tokens, y.data(), rows, one);
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_NEAR(y[i], ref[i], 2e-6 * (magnitude[i] + 1e-6)) << dtype_name(type) << " @" << i;
  }
  set_backend(saved);
}

TEST(PackedMatrix, KeepsTheFileBytesOnlyReordered) {
  if (!cpu_features().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  Backend saved = active_backend();
  set_backend(Backend::Avx2);
  ThreadPool pool(2);
  for (DType type : {DType::Q4_0, DType::Q8_0}) {
    auto q = quantize_matrix(type, 16, 64, 3);
    PackedMatrix packed(q.matrix, pool);
    EXPECT_EQ(packed.bytes(), q.matrix.row_bytes * 16);
    // Row 9's second block: scale in slot 1 of group 1's block 1, quants in 4-byte chunks.
    const size_t block = dtype_info(type).block_bytes, quants = block - 2;
    const std::byte* group_block = packed.view().data + 8 * q.matrix.row_bytes + 8 * block;
    const std::byte* source = q.matrix.row(9) + block;
    EXPECT_EQ(std::memcmp(group_block + 2, source, 2), 0);
    for (size_t c = 0; c < quants / 4; ++c)
      EXPECT_EQ(std::memcmp(group_block + 16 + 32 * c + 4, source + 2 + 4 * c, 4), 0) << "chunk " << c;
  }
  EXPECT_FALSE(can_pack(quantize_matrix(DType::Q4_0, 12, 64, 4).matrix)) << "12 rows are not whole groups of 8";
  EXPECT_FALSE(can_pack(quantize_matrix(DType::Q4_1, 16, 64, 5).matrix)) << "Q4_1 is not packed";
  EXPECT_FALSE(can_pack(quantize_matrix(DType::Q4_K, 12, 256, 4).matrix)) << "12 rows are not whole groups of 8";
  set_backend(Backend::Scalar);
  EXPECT_FALSE(can_pack(quantize_matrix(DType::Q4_K, 16, 256, 6).matrix)) << "the scalar backend reads the file layout";
  set_backend(saved);
}

// Training's backward reads rows of a packed matrix back: every row, any block range, the file's bytes.
TEST(PackedMatrix, UnpacksEveryRowToTheFileBytes) {
  if (!cpu_features().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  ThreadPool pool(2);
  for (DType type : {DType::Q4_0, DType::Q8_0}) {
    auto q = quantize_matrix(type, 24, 160, 7);
    PackedMatrix packed(q.matrix, pool);
    const size_t block = dtype_info(type).block_bytes;
    std::vector<std::byte> row(q.matrix.row_bytes);
    for (int64_t r = 0; r < 24; ++r)
      for (int64_t first : {0, 2, 4}) {
        const int64_t n = 5 - first;
        unpack_blocks(packed.view(), r, first, n, row.data());
        EXPECT_EQ(std::memcmp(row.data(), q.matrix.row(r) + first * block, n * block), 0)
            << dtype_name(type) << " row " << r << " blocks " << first << "+" << n;
      }
  }
  EXPECT_FALSE(can_unpack(DType::Q4_K));
  EXPECT_THROW(unpack_blocks(quantize_matrix(DType::Q4_0, 8, 64, 8).matrix, 0, 0, 1, nullptr), baichuan::Error)
      << "a matrix in the file layout";
}

// K-quants: the f16 scales and quants in their documented places; Q4_K's 6-bit scales and mins
// decoded to bytes (32 bytes more per super-block of 8 rows), Q6_K the file's size exactly.
TEST(PackedMatrix, LaysOutKQuantsAsDocumented) {
  if (!cpu_features().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  Backend saved = active_backend();
  set_backend(Backend::Avx2);
  ThreadPool pool(2);
  {
    auto q = quantize_matrix(DType::Q4_K, 16, 512, 7);
    PackedMatrix packed(q.matrix, pool);
    EXPECT_EQ(packed.bytes(), 2 * 2 * PackedQ4K::kBytes);
    quant::block_q4_K src;  // row 9, super-block 1
    std::memcpy(&src, q.matrix.row(9) + sizeof src, sizeof src);
    const std::byte* block = packed.view().data + packed.view().row_bytes + PackedQ4K::kBytes;
    EXPECT_EQ(std::memcmp(block + PackedQ4K::kD + 2, &src.d, 2), 0);
    EXPECT_EQ(std::memcmp(block + PackedQ4K::kDmin + 2, &src.dmin, 2), 0);
    for (int j = 0; j < 8; ++j) {
      const auto sm = quant::scale_min_k4(src.scales, j);
      EXPECT_EQ(static_cast<uint8_t>(block[PackedQ4K::kScales + 16 * (j / 2) + 2 + j % 2]), sm.scale) << j;
      EXPECT_EQ(static_cast<uint8_t>(block[PackedQ4K::kMins + 16 * (j / 2) + 2 + j % 2]), sm.min) << j;
    }
    for (int c = 0; c < 32; ++c) EXPECT_EQ(std::memcmp(block + PackedQ4K::kQs + 32 * c + 4, src.qs + 4 * c, 4), 0) << c;
  }
  {
    auto q = quantize_matrix(DType::Q6_K, 16, 512, 8);
    PackedMatrix packed(q.matrix, pool);
    EXPECT_EQ(packed.bytes(), q.matrix.row_bytes * 16);
    quant::block_q6_K src;  // row 9, super-block 1
    std::memcpy(&src, q.matrix.row(9) + sizeof src, sizeof src);
    const std::byte* block = packed.view().data + packed.view().row_bytes + PackedQ6K::kBytes;
    EXPECT_EQ(std::memcmp(block + PackedQ6K::kD + 2, &src.d, 2), 0);
    for (int j = 0; j < 16; ++j)
      EXPECT_EQ(static_cast<int8_t>(block[PackedQ6K::kScales + 16 * (j / 2) + 2 + j % 2]), src.scales[j]) << j;
    // Element 0: low bits in the low nibble of low-bit chunk 0, top bits in bits 0-1 of high-bit chunk 0.
    const int code0 = (src.ql[0] & 0x0F) | (src.qh[0] & 3) << 4;
    const auto low = static_cast<uint8_t>(block[PackedQ6K::kLow + 4]), high = static_cast<uint8_t>(block[PackedQ6K::kHigh + 4]);
    EXPECT_EQ((low & 0x0F) | (high & 3) << 4, code0);
  }
  set_backend(saved);
}

}  // namespace
}  // namespace baichuan::kernels
