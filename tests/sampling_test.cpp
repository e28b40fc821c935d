// Logits processors and the sampler, with Hugging Face semantics, on hand-made logits.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "generate/sampling.h"

namespace baichuan {
namespace sampling_test {  // named, not anonymous: the tests compile as a unity build

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeOncePerId) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  std::vector<int32_t> seen = {0, 1, 0, 0};
  apply_repetition_penalty(logits, seen, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.5f}));
}

TEST(Sampling, TopKKeepsTiesAtTheBoundary) {
  std::vector<float> logits = {1, 3, 3, 2, 0};
  SamplingParams p;
  p.top_k = 2;
  auto kept = kept_distribution(logits, {}, p);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_NEAR(kept[0].second, 0.5f, 1e-6);
  p.top_k = 3;
  EXPECT_EQ(kept_distribution(logits, {}, p).size(), 3u);
}

TEST(Sampling, TopPKeepsTheSmallestSetAboveTheThresholdAndAlwaysOne) {
  // probabilities 0.5, 0.3, 0.2 (logits are their logs)
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.top_p = 0.7f;  // ascending cumsum: 0.2 <= 0.3 removed; 0.5 > 0.3 kept
  auto kept = kept_distribution(logits, {}, p);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].first, 0);
  EXPECT_NEAR(kept[0].second, 0.5f / 0.8f, 1e-6);
  p.top_p = 0.01f;
  EXPECT_EQ(kept_distribution(logits, {}, p).size(), 1u);
}

TEST(Sampling, TemperatureSharpens) {
  std::vector<float> logits = {1.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.5f;
  auto kept = kept_distribution(logits, {}, p);
  EXPECT_NEAR(kept[0].second, 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
}

TEST(Sampling, SeededSamplerIsRepeatableAndFollowsTheDistribution) {
  std::vector<float> base = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  SamplingParams p;
  p.seed = 7;
  Sampler a(p), b(p);
  std::map<int32_t, int> counts;
  for (int i = 0; i < 20000; ++i) {
    auto la = base, lb = base;
    int32_t x = a.next(la, {});
    EXPECT_EQ(x, b.next(lb, {}));
    counts[x]++;
  }
  EXPECT_NEAR(counts[0] / 20000.0, 0.6, 0.02);
  EXPECT_NEAR(counts[1] / 20000.0, 0.3, 0.02);
  EXPECT_NEAR(counts[2] / 20000.0, 0.1, 0.02);
}

TEST(Sampling, GreedyTakesArgmaxAfterPenalty) {
  SamplingParams p;
  p.greedy = true;
  p.repetition_penalty = 4.0f;
  Sampler s(p);
  std::vector<float> logits = {3.0f, 1.0f};
  std::vector<int32_t> seen = {0};
  EXPECT_EQ(s.next(logits, seen), 1);
}

TEST(Sampling, InvalidParametersAreRejected) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_THROW(p.validate(), Error);
  p = {};
  p.top_p = 1.5f;
  EXPECT_THROW(p.validate(), Error);
  p = {};
  p.top_k = -1;
  EXPECT_THROW(p.validate(), Error);
}

}  // namespace
}  // namespace baichuan
