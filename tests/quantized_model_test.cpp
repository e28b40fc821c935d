// Quantized GGUF files of the reference checkpoints against the float32 model: Q8_0 keeps the greedy
// tokens, and every type stays within a KL-divergence bound of the float distributions.
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "convert/gguf_convert.h"
#include "core/mapped_file.h"
#include "generate/generator.h"
#include "golden.h"
#include "greedy.h"
#include "model/gguf_checkpoint.h"
#include "model/model.h"
#include "shared_data.h"
#include "test_files.h"

namespace baichuan {
namespace quantized_model_test {  // named, not anonymous: the tests compile as a unity build

using testing::shared_path;

std::vector<double> softmax(const std::vector<float>& logits) {
  double max = *std::max_element(logits.begin(), logits.end()), sum = 0;
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(logits[i] - max);
  for (double& x : p) x /= sum;
  return p;
}

struct Agreement {
  double mean_kl = 0;
  double top1 = 0;  // fraction of prompts whose arg-max agrees
};

Agreement compare(const Model& reference, const Model& quantized, const nlohmann::json& prompts, ThreadPool& pool) {
  Agreement a;
  ModelContext context;
  for (const auto& p : prompts) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    KvCache c1 = reference.new_cache(static_cast<int64_t>(ids.size()));
    KvCache c2 = quantized.new_cache(static_cast<int64_t>(ids.size()));
    auto l1 = reference.forward_last(context, c1, ids, pool), l2 = quantized.forward_last(context, c2, ids, pool);
    auto p1 = softmax(l1), p2 = softmax(l2);
    double kl = 0;
    for (size_t i = 0; i < p1.size(); ++i)
      if (p1[i] > 0) kl += p1[i] * (std::log(p1[i]) - std::log(std::max(p2[i], 1e-300)));
    a.mean_kl += kl / static_cast<double>(prompts.size());
    bool same = std::max_element(l1.begin(), l1.end()) - l1.begin() == std::max_element(l2.begin(), l2.end()) - l2.begin();
    a.top1 += (same ? 1.0 : 0.0) / static_cast<double>(prompts.size());
  }
  return a;
}

class QuantizedModel : public ::testing::TestWithParam<std::pair<DType, double>> {};

TEST_P(QuantizedModel, StaysCloseToFloat32) {
  auto [type, max_kl] = GetParam();
  std::string folder = shared_path("reference/b2-7b-tiny");
  REQUIRE_SHARED(testing::golden_json_path(folder));
  auto golden = testing::read_golden(folder);
  std::string path = testing::temp_path("quant", std::string(dtype_name(type)) + ".gguf");
  ConvertOptions options;
  options.type = type;
  write_gguf_checkpoint(open_checkpoint(folder), path, options);
  Model reference(open_checkpoint(folder)), quantized(open_checkpoint(path));
  reference.set_kv_type(DType::F32);  // the exact float32 model; the quantized one keeps the default F16 cache
  EXPECT_EQ(quantized.checkpoint().tensor("blk.0.attn_q.weight").dtype, type);
  ThreadPool pool(2);
  Agreement a = compare(reference, quantized, golden["prompts"], pool);
  std::cout << dtype_name(type) << ": mean KL " << a.mean_kl << ", top-1 agreement " << a.top1 << "\n";
  EXPECT_LE(a.mean_kl, max_kl);
  if (type == DType::Q8_0) {
    EXPECT_NEAR(a.top1, 1.0, 1e-9) << "Q8_0 must keep the most likely next token of every prompt";
  }
  // How long greedy decoding follows the float32 tokens (reported; the random reference weights give
  // near-flat distributions where tiny differences can swap the top two after a few steps).
  size_t followed = 0, total = 0;
  for (const auto& p : golden["prompts"]) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    auto expected = p["greedy"].get<std::vector<int32_t>>();
    auto got = testing::greedy_tokens(quantized, pool, ids, expected.size());
    size_t n = 0;
    while (n < got.size() && got[n] == expected[n]) ++n;
    followed += n;
    total += expected.size();
  }
  std::cout << dtype_name(type) << ": greedy follows float32 for " << followed << " of " << total << " tokens\n";
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedModel,
                         ::testing::Values(std::pair{DType::Q8_0, 1e-3}, std::pair{DType::Q5_1, 5e-2},
                                           std::pair{DType::Q5_0, 5e-2}, std::pair{DType::Q4_1, 5e-2},
                                           std::pair{DType::Q4_0, 5e-2}),
                         [](const auto& info) { return std::string(dtype_name(info.param.first)); });

// -t 1 and -t 2 give the same numbers, bit for bit: every output element is computed by one thread
// with the same instructions whatever the split (prompt tiles and one-token decoding both).
TEST(QuantizedModelThreads, OneAndTwoThreadsGiveIdenticalLogits) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 30 s under AddressSanitizer; threads on a packed model run there in SharedModel.*.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  std::string folder = shared_path("reference/b2-7b-tiny");
  REQUIRE_SHARED(testing::golden_json_path(folder));
  auto golden = testing::read_golden(folder);
  auto ids = golden["prompts"][0]["ids"].get<std::vector<int32_t>>();
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q5_1, DType::F16}) {
    std::string path = testing::temp_path("threads", std::string(dtype_name(type)) + ".gguf");
    ConvertOptions options;
    options.type = type;
    write_gguf_checkpoint(open_checkpoint(folder), path, options);
    Model model(open_checkpoint(path));
    std::vector<std::vector<float>> runs;
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      ModelContext context;
      KvCache cache = model.new_cache(static_cast<int64_t>(ids.size()) + 4);
      auto last = model.forward_last(context, cache, ids, pool);  // the prompt: multi-token tiles
      std::vector<float> logits = last;
      for (int step = 0; step < 4; ++step) {  // then one token at a time
        int32_t next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        last = model.forward_last(context, cache, std::vector<int32_t>{next}, pool);
        logits.insert(logits.end(), last.begin(), last.end());
      }
      runs.push_back(std::move(logits));
    }
    ASSERT_EQ(runs[0].size(), runs[1].size());
    EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)), 0)
        << dtype_name(type) << ": -t 1 and -t 2 differ";
  }
}

}  // namespace
}  // namespace baichuan
