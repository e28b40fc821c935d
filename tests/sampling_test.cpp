// Logits processors and the sampler, with Hugging Face semantics, on hand-made logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

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

// log p_i = log(exp(l_i) / sum_j exp(l_j)), summed in long double without the max shift.
std::vector<double> reference_log_softmax(const std::vector<float>& logits) {
  long double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<long double>(l));
  std::vector<double> out;
  for (float l : logits) out.push_back(static_cast<double>(std::log(std::exp(static_cast<long double>(l)) / sum)));
  return out;
}

std::vector<float> random_logits(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(n);
  for (float& l : logits) l = normal(rng);
  logits[n / 2] = logits[n / 3];  // a tie
  return logits;
}

TEST(Sampling, TokenLogprobsAreTheLogSoftmaxAndItsLargest) {
  const std::vector<float> logits = random_logits(1000, 1);
  const std::vector<double> ref = reference_log_softmax(logits);
  std::vector<int32_t> by_logprob(logits.size());
  for (size_t i = 0; i < by_logprob.size(); ++i) by_logprob[i] = static_cast<int32_t>(i);
  std::stable_sort(by_logprob.begin(), by_logprob.end(), [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
  for (int32_t chosen : {0, 17, 999}) {
    const TokenLogprobs t = token_logprobs(logits, chosen, 7);
    EXPECT_EQ(t.chosen.id, chosen);
    EXPECT_NEAR(t.chosen.logprob, ref[static_cast<size_t>(chosen)], 1e-5);
    ASSERT_EQ(t.top.size(), 7u);
    for (size_t k = 0; k < t.top.size(); ++k) {
      EXPECT_EQ(t.top[k].id, by_logprob[k]) << k;
      EXPECT_NEAR(t.top[k].logprob, ref[static_cast<size_t>(by_logprob[k])], 1e-5);
    }
  }
  // Removed (-inf) tokens are never among the top ones, so there may be fewer than asked.
  std::vector<float> masked = {1.0f, -INFINITY, 0.5f};
  const TokenLogprobs m = token_logprobs(masked, 0, 5);
  ASSERT_EQ(m.top.size(), 2u);
  EXPECT_NEAR(m.chosen.logprob, std::log(1 / (1 + std::exp(-0.5))), 1e-6);
}

TEST(Sampling, SamplerLogprobsAreAfterTemperatureAndBeforeTruncation) {
  const std::vector<float> logits = random_logits(50, 2);
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 3;
  p.seed = 5;
  Sampler sampler(p);
  auto work = logits;
  TokenLogprobs t;
  const int32_t id = sampler.next(work, {}, 5, &t);
  std::vector<float> scaled;
  for (float l : logits) scaled.push_back(l / 0.7f);
  const std::vector<double> ref = reference_log_softmax(scaled);
  EXPECT_EQ(t.chosen.id, id);
  EXPECT_NEAR(t.chosen.logprob, ref[static_cast<size_t>(id)], 1e-5);
  ASSERT_EQ(t.top.size(), 5u);  // top_k = 3 did not cut the alternatives
  for (const auto& alt : t.top) EXPECT_NEAR(alt.logprob, ref[static_cast<size_t>(alt.id)], 1e-5);

  p.greedy = true;  // greedy: the distribution at temperature 1
  Sampler greedy(p);
  work = logits;
  greedy.next(work, {}, 0, &t);
  EXPECT_NEAR(t.chosen.logprob, reference_log_softmax(logits)[static_cast<size_t>(t.chosen.id)], 1e-5);
  EXPECT_TRUE(t.top.empty());
}

TEST(Sampling, ALogitBiasOfPlus100ForcesATokenUnderGreedy) {
  const std::vector<float> logits = random_logits(200, 3);
  const auto weakest = static_cast<int32_t>(std::min_element(logits.begin(), logits.end()) - logits.begin());
  SamplingParams p;
  p.greedy = true;
  Sampler s(p);
  auto work = logits;
  const std::pair<int32_t, float> up[] = {{weakest, 100.0f}};
  apply_logit_bias(work, up);
  EXPECT_EQ(s.next(work, {}), weakest);
  work = logits;
  const auto strongest = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const std::pair<int32_t, float> down[] = {{strongest, -100.0f}};
  apply_logit_bias(work, down);
  EXPECT_NE(s.next(work, {}), strongest);
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
