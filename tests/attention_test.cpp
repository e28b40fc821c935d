// The blocked attention (kernels/attention.h) against a plain causal softmax in double, on random
// queries and caches of awkward sizes, on every kernel path this CPU runs; then through the model:
// a prompt of several query tiles against the same tokens fed one at a time, and -t 1 against -t 2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/thread_pool.h"
#include "error_matchers.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/vec.h"
#include "model/model.h"
#include "quant/type_traits.h"
#include "random_inputs.h"
#include "shared_data.h"

namespace baichuan {
namespace attention_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;
using kernels::Backend;
using baichuan::testing::random_floats;

// Cached rows of `positions` x `head_dim` stored in `type` with a row stride wider than one head
// (as a cache row holds every head), and the values the kernel will read back, as float.
struct StoredRows {
  std::vector<std::byte> bytes;
  std::vector<float> decoded;
  size_t stride = 0;
};

StoredRows store_rows(DType type, const std::vector<float>& rows, int64_t positions, int64_t head_dim) {
  StoredRows s;
  const size_t head_bytes = bytes_for(type, head_dim, "test row");
  s.stride = head_bytes * 2 + 64;  // other heads' bytes between positions
  s.bytes.assign(s.stride * static_cast<size_t>(positions), std::byte{0x7f});
  s.decoded.resize(rows.size());
  for (int64_t j = 0; j < positions; ++j) {
    std::byte* row = s.bytes.data() + static_cast<size_t>(j) * s.stride + head_bytes;  // not at offset 0
    quant::from_float_row(type, rows.data() + j * head_dim, row, head_dim);
    kernels::scalar::row_to_f32(type, row, s.decoded.data() + j * head_dim, head_dim);
  }
  return s;
}

// Row i at position pos0 + i over keys [0, pos0 + i], all in double.
std::vector<double> reference_attention(const std::vector<float>& q, const std::vector<float>& k,
                                        const std::vector<float>& v, int64_t n_queries, int64_t pos0, int64_t d,
                                        double scale, double slope) {
  std::vector<double> out(static_cast<size_t>(n_queries * d), 0.0);
  for (int64_t i = 0; i < n_queries; ++i) {
    const int64_t seen = pos0 + i + 1;
    std::vector<double> score(static_cast<size_t>(seen));
    double max = -INFINITY;
    for (int64_t j = 0; j < seen; ++j) {
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(q[i * d + c]) * k[j * d + c];
      score[j] = dot * scale + slope * static_cast<double>(j);
      max = std::max(max, score[j]);
    }
    double sum = 0;
    for (double& s : score) sum += (s = std::exp(s - max));
    for (int64_t j = 0; j < seen; ++j)
      for (int64_t c = 0; c < d; ++c) out[i * d + c] += score[j] / sum * v[j * d + c];
  }
  return out;
}

struct Case {
  int64_t head_dim, n_queries, pos0;
  float slope, sigma;  // ALiBi slope (0 = RoPE); spread of the queries (large = peaked softmax)
};

std::vector<Backend> supported_backends() {
  std::vector<Backend> b;
  for (Backend x : {Backend::Scalar, Backend::Avx2, Backend::Avx512})
    if (kernels::backend_supported(x)) b.push_back(x);
  return b;
}

// Restores the start-up backend when a test ends, whatever it forced.
struct BackendGuard {
  Backend saved = kernels::active_backend();
  ~BackendGuard() { kernels::set_backend(saved); }
};

TEST(Attention, BlockedMatchesDoubleSoftmaxOnEveryPathTypeAndShape) {
  BackendGuard guard;
  // Query counts across the narrow/wide split (4) and vector widths; first positions below, at
  // and past a key tile (64); head sizes with and without vector remainders (Q8_0 needs 32s).
  const std::vector<Case> cases = {
      {128, 1, 0, 0.0f, 1.0f},    {128, 1, 200, 0.0f, 1.0f},  {128, 3, 61, 0.5f, 1.0f},  {128, 4, 0, 0.0f, 1.0f},
      {128, 5, 63, 0.0f, 3.0f},   {128, 17, 64, 0.25f, 1.0f}, {128, 64, 0, 0.0f, 1.0f},  {128, 64, 130, 0.0625f, 2.0f},
      {128, 33, 1, 0.0f, 8.0f},   {32, 2, 70, 0.0f, 1.0f},    {32, 64, 127, 0.5f, 1.0f}, {96, 9, 40, 0.0f, 1.0f},
      {40, 1, 65, 0.0f, 1.0f},    {40, 23, 3, 0.125f, 1.0f},  {8, 64, 100, 0.0f, 1.0f},  {8, 7, 0, 0.0f, 1.0f},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const int64_t d = c.head_dim, positions = c.pos0 + c.n_queries;
    const auto q = random_floats(static_cast<size_t>(c.n_queries * d), seed++, c.sigma);
    const auto k = random_floats(static_cast<size_t>(positions * d), seed++, 1.0f);
    const auto v = random_floats(static_cast<size_t>(positions * d), seed++, 1.0f);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    for (DType type : {DType::F32, DType::F16, DType::Q8_0}) {
      if (type == DType::Q8_0 && d % 32 != 0) continue;
      const StoredRows keys = store_rows(type, k, positions, d), values = store_rows(type, v, positions, d);
      const auto expected =
          reference_attention(q, keys.decoded, values.decoded, c.n_queries, c.pos0, d, scale, c.slope);
      for (Backend backend : supported_backends()) {
        kernels::set_backend(backend);
        const int64_t stride = d + 5;  // rows of the query and output matrices are wider than one head
        std::vector<float> queries(static_cast<size_t>(c.n_queries * stride), NAN);
        for (int64_t i = 0; i < c.n_queries; ++i) std::memcpy(&queries[i * stride], &q[i * d], d * sizeof(float));
        std::vector<float> out(static_cast<size_t>(c.n_queries * stride), -7.0f);
        kernels::AttentionHead head;
        head.queries = queries.data();
        head.query_stride = stride;
        head.n_queries = c.n_queries;
        head.pos0 = c.pos0;
        const size_t first = bytes_for(type, d, "test row");
        head.keys = keys.bytes.data() + first;
        head.values = values.bytes.data() + first;
        head.kv_stride = keys.stride;
        head.kv_type = type;
        head.head_dim = d;
        head.scale = static_cast<float>(scale);
        head.alibi_slope = c.slope;
        head.out = out.data();
        head.out_stride = stride;
        kernels::attend(head);
        for (int64_t i = 0; i < c.n_queries; ++i) {
          for (int64_t col = 0; col < d; ++col)
            ASSERT_NEAR(out[i * stride + col], expected[i * d + col], 2e-5)
                << kernels::backend_name(backend) << " " << dtype_name(type) << " d=" << d << " rows=" << c.n_queries
                << " pos0=" << c.pos0 << " slope=" << c.slope << " row " << i << " col " << col;
          for (int64_t col = d; col < stride; ++col) ASSERT_EQ(out[i * stride + col], -7.0f) << "wrote past the head";
        }
      }
    }
  }
}

TEST(Attention, RefusesQueryCountsOutsideOneTile) {
  std::vector<float> q(64 * 65), out(64 * 65);
  std::vector<std::byte> kv(4 * 64 * 65);
  kernels::AttentionHead head;
  head.queries = q.data();
  head.query_stride = 64;
  head.keys = head.values = kv.data();
  head.kv_stride = 64 * 4;
  head.head_dim = 64;
  head.out = out.data();
  head.out_stride = 64;
  for (int64_t n : {int64_t{0}, kernels::kAttentionQueryTile + 1}) {
    head.n_queries = n;
    EXPECT_THAT([&] { kernels::attend(head); }, throws_error("query rows")) << n << " query rows";
  }
}

// Through the model: a 150-token prompt (three query tiles; the wide path) gives the logits of the
// same tokens fed one at a time (the narrow path), for RoPE and ALiBi and each cache type the tiny
// models' head size allows; and -t 1 and -t 2 give the prompt's logits bit for bit.
TEST(AttentionModel, LongPromptMatchesTokenByTokenAndThreadCounts) {
  for (const char* name : {"b2-7b-tiny", "b2-13b-tiny"}) {
    const std::string folder = testing::shared_path(std::string("reference/") + name);
    REQUIRE_SHARED(folder + "/config.json");
    Model model(open_checkpoint(folder));
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(model.config().vocab_size - 1));
    std::vector<int32_t> ids(150);
    for (auto& t : ids) t = id(rng);
    for (DType type : {DType::F32, DType::F16}) {
      model.set_kv_type(type);
      auto prompt_logits = [&](int threads) {
        ThreadPool pool(threads);
        ModelContext context;
        KvCache cache = model.new_cache(static_cast<int64_t>(ids.size()));
        std::vector<float> logits;
        SequenceStep step{&cache, ids, true, &logits};
        model.forward(context, std::span<SequenceStep>(&step, 1), pool);
        return logits;
      };
      const auto one = prompt_logits(1), two = prompt_logits(2);
      ASSERT_EQ(one.size(), two.size());
      EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0)
          << name << " " << dtype_name(type) << ": -t 1 and -t 2 differ";

      ThreadPool pool(2);
      ModelContext context;
      KvCache cache = model.new_cache(static_cast<int64_t>(ids.size()));
      const auto vocab = static_cast<size_t>(model.config().vocab_size);
      double worst = 0;
      for (size_t t = 0; t < ids.size(); ++t) {
        auto last = model.forward_last(context, cache, std::span<const int32_t>(&ids[t], 1), pool);
        for (size_t i = 0; i < vocab; ++i) worst = std::max(worst, std::abs(static_cast<double>(last[i]) - one[t * vocab + i]));
      }
      EXPECT_LT(worst, 1e-4) << name << " " << dtype_name(type) << ": prompt and token-by-token logits differ";
    }
  }
}

}  // namespace attention_test
}  // namespace baichuan
