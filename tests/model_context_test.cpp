// One read-only Model shared by threads, each with its own ModelContext and ThreadPool: forwarding
// different prompts at the same time gives exactly the logits of running them one after the other
// (float32 and quantized weights, the quantized ones packed for the SIMD kernels at load).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <latch>
#include <nlohmann/json.hpp>
#include <thread>

#include "convert/gguf_convert.h"
#include "core/mapped_file.h"
#include "golden.h"
#include "kernels/cpu.h"
#include "model/gguf_checkpoint.h"
#include "model/model.h"
#include "shared_data.h"
#include "test_files.h"

namespace baichuan {
namespace model_context_test {  // named, not anonymous: the tests compile as a unity build

using testing::shared_path;

struct Case {
  std::string name;
  std::string folder;  // under reference/
  std::string type;    // "" = the folder as it is; else converted to a GGUF of this type
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// What one caller computes: every row's logits of the prompt, then a few greedy tokens one at a time
// (multi-row and one-row kernels), the cache cleared and all of it repeated so the two callers
// overlap for longer.
std::vector<float> run_caller(const Model& model, ModelContext& context, ThreadPool& pool,
                              const std::vector<int32_t>& prompt) {
  constexpr int kRounds = 3, kDecoded = 6;
  std::vector<float> all;
  KvCache cache = model.new_cache(static_cast<int64_t>(prompt.size()) + kDecoded);
  for (int round = 0; round < kRounds; ++round) {
    cache.clear();
    std::vector<float> logits;
    SequenceStep step{&cache, prompt, true, &logits};
    model.forward(context, std::span<SequenceStep>(&step, 1), pool);
    all.insert(all.end(), logits.begin(), logits.end());
    std::vector<float> last(logits.end() - model.config().vocab_size, logits.end());
    for (int t = 0; t < kDecoded; ++t) {
      const auto next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      last = model.forward_last(context, cache, std::vector<int32_t>{next}, pool);
      all.insert(all.end(), last.begin(), last.end());
    }
  }
  return all;
}

class SharedModel : public ::testing::TestWithParam<Case> {};

TEST_P(SharedModel, TwoThreadsGiveTheLogitsOfSequentialRuns) {
  const Case& c = GetParam();
  const std::string folder = shared_path("reference/" + c.folder);
  REQUIRE_SHARED(testing::golden_json_path(folder));
  const auto golden = testing::read_golden(folder);
  std::string path = folder;
  if (!c.type.empty()) {
    path = testing::temp_path("model_context", c.name + ".gguf");
    ConvertOptions options;
    options.type = c.type == "q4_0" ? DType::Q4_0 : DType::Q8_0;
    write_gguf_checkpoint(open_checkpoint(folder), path, options);
  }
  ThreadPool load_pool(2);
  const auto model = load_model(path, {}, &load_pool);
  if (!c.type.empty()) {
    EXPECT_NE(model->checkpoint().tensor("blk.0.attn_q.weight").dtype, DType::F32) << "nothing was quantized";
    if (kernels::avx2_kernels()) {
      EXPECT_GT(model->preparation().packed_matrices, 0) << "nothing was packed";
    }
  }
  // Two different prompts of different lengths.
  const auto a = golden["prompts"][0]["ids"].get<std::vector<int32_t>>();
  const auto b = golden["prompts"][1]["ids"].get<std::vector<int32_t>>();
  ASSERT_NE(a, b);

  std::vector<float> sequential_a, sequential_b;
  {
    ModelContext context;
    ThreadPool pool(1);
    sequential_a = run_caller(*model, context, pool, a);
    sequential_b = run_caller(*model, context, pool, b);
  }

  std::vector<float> concurrent_a, concurrent_b;
  std::latch start(2);
  auto caller = [&](const std::vector<int32_t>& prompt, std::vector<float>& out) {
    ModelContext context;
    ThreadPool pool(2);
    start.arrive_and_wait();
    out = run_caller(*model, context, pool, prompt);
  };
  std::thread ta(caller, std::cref(a), std::ref(concurrent_a));
  std::thread tb(caller, std::cref(b), std::ref(concurrent_b));
  ta.join();
  tb.join();

  ASSERT_EQ(concurrent_a.size(), sequential_a.size());
  ASSERT_EQ(concurrent_b.size(), sequential_b.size());
  EXPECT_EQ(std::memcmp(concurrent_a.data(), sequential_a.data(), sequential_a.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(concurrent_b.data(), sequential_b.data(), sequential_b.size() * sizeof(float)), 0);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

// The 13B tiny model's sizes (hidden 40) are not whole quantization blocks: float32 only.
INSTANTIATE_TEST_SUITE_P(Checkpoints, SharedModel,
                         ::testing::Values(Case{"F32_7B", "b2-7b-tiny", ""}, Case{"F32_13B", "b2-13b-tiny", ""},
                                           Case{"Q4_0_7B", "b2-7b-tiny", "q4_0"}, Case{"Q8_0_7B", "b2-7b-tiny", "q8_0"}),
                         case_name);

// A context carries nothing from one forward pass to the next but its buffers: after a large batch
// on another model, it gives the logits of a fresh context.
TEST(ModelContext, ReusedAcrossModelsAndBatchSizesGivesFreshResults) {
  const std::string folder7 = shared_path("reference/b2-7b-tiny"), folder13 = shared_path("reference/b2-13b-tiny");
  REQUIRE_SHARED(testing::golden_json_path(folder7));
  REQUIRE_SHARED(testing::golden_json_path(folder13));
  const auto ids = testing::read_golden(folder7)["prompts"][0]["ids"].get<std::vector<int32_t>>();
  ThreadPool pool(2);
  const auto m7 = load_model(folder7, {}, &pool), m13 = load_model(folder13, {}, &pool);
  ModelContext fresh, reused;
  KvCache c1 = m7->new_cache(64), c2 = m13->new_cache(64), c3 = m7->new_cache(64);
  const auto expected = m7->forward_last(fresh, c1, std::span<const int32_t>(ids).first(1), pool);
  m13->forward_last(reused, c2, ids, pool);  // grows the buffers to a whole prompt of the other shape
  EXPECT_GT(reused.bytes(), fresh.bytes());
  const auto got = m7->forward_last(reused, c3, std::span<const int32_t>(ids).first(1), pool);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
}

}  // namespace model_context_test
}  // namespace baichuan
