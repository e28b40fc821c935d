#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "core/error.h"

namespace baichuan {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// HF TopKLogitsWarper: everything below the k-th largest logit is removed (ties with it stay).
void apply_top_k(std::span<float> logits, int64_t k) {
  if (k <= 0 || k >= static_cast<int64_t>(logits.size())) return;
  std::vector<float> copy(logits.begin(), logits.end());
  std::nth_element(copy.begin(), copy.begin() + (k - 1), copy.end(), std::greater<float>());
  float threshold = copy[static_cast<size_t>(k - 1)];
  for (float& l : logits)
    if (l < threshold) l = kNegInf;
}

// HF TopPLogitsWarper: sort ascending, remove tokens whose cumulative probability is <= 1 - top_p,
// always keeping the most likely token.
void apply_top_p(std::span<float> logits, float top_p) {
  if (top_p >= 1.0f) return;
  std::vector<int32_t> order;  // removed (-inf) tokens have probability 0 and stay removed: skip them
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != kNegInf) order.push_back(static_cast<int32_t>(i));
  if (order.empty()) return;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
  float max = logits[static_cast<size_t>(order.back())];
  double sum = 0;
  for (int32_t i : order) sum += std::exp(static_cast<double>(logits[static_cast<size_t>(i)] - max));
  float cumulative = 0.0f;
  for (size_t i = 0; i + 1 < order.size(); ++i) {
    float& l = logits[static_cast<size_t>(order[i])];
    cumulative += static_cast<float>(std::exp(static_cast<double>(l - max)) / sum);
    if (cumulative <= 1.0f - top_p) l = kNegInf;
  }
}

// The processors that reshape the distribution (what logprobs report) ...
void scale(std::span<float> logits, std::span<const int32_t> seen, const SamplingParams& p) {
  apply_repetition_penalty(logits, seen, p.repetition_penalty);
  if (p.greedy) return;
  if (p.temperature != 1.0f)
    for (float& l : logits) l /= p.temperature;
}

// ... and those that cut its tail.
void truncate(std::span<float> logits, const SamplingParams& p) {
  if (p.greedy) return;
  apply_top_k(logits, p.top_k);
  apply_top_p(logits, p.top_p);
}

void process(std::span<float> logits, std::span<const int32_t> seen, const SamplingParams& p) {
  scale(logits, seen, p);
  truncate(logits, p);
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

}  // namespace

SamplingParams SamplingParams::from(const GenerationConfig& g) {
  SamplingParams p;
  p.greedy = !g.do_sample;
  p.temperature = g.temperature;
  p.top_k = g.top_k;
  p.top_p = g.top_p;
  p.repetition_penalty = g.repetition_penalty;
  return p;
}

void SamplingParams::validate() const {
  if (!greedy && !(temperature > 0)) fail("temperature must be > 0, got ", temperature, " (use greedy decoding instead)");
  if (!(top_p > 0 && top_p <= 1)) fail("top_p must be in (0, 1], got ", top_p);
  if (top_k < 0) fail("top_k must be >= 0, got ", top_k);
  if (!(repetition_penalty > 0)) fail("repetition_penalty must be > 0, got ", repetition_penalty);
}

void apply_logit_bias(std::span<float> logits, std::span<const std::pair<int32_t, float>> bias) {
  for (const auto& [id, b] : bias)
    if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[static_cast<size_t>(id)] += b;
}

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t chosen, size_t top_n) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  const double log_z = max + std::log(sum);
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(id)]) - log_z);
  };
  TokenLogprobs out;
  out.chosen = {chosen, logprob(chosen)};
  std::vector<int32_t> ids;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != kNegInf) ids.push_back(static_cast<int32_t>(i));
  const size_t n = std::min(top_n, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(), [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  for (size_t i = 0; i < n; ++i) out.top.push_back({ids[i], logprob(ids[i])});
  return out;
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> seen, float penalty) {
  if (penalty == 1.0f) return;
  std::unordered_set<int32_t> done;
  for (int32_t id : seen) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || !done.insert(id).second) continue;
    float& l = logits[static_cast<size_t>(id)];
    l = l < 0 ? l * penalty : l / penalty;
  }
}

std::vector<std::pair<int32_t, float>> kept_distribution(std::span<const float> logits, std::span<const int32_t> seen,
                                                          const SamplingParams& params) {
  std::vector<float> l(logits.begin(), logits.end());
  SamplingParams p = params;
  p.greedy = false;
  process(l, seen, p);
  float max = *std::max_element(l.begin(), l.end());
  double sum = 0;
  for (float x : l) sum += std::exp(static_cast<double>(x - max));
  std::vector<std::pair<int32_t, float>> kept;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] == kNegInf) continue;
    float prob = static_cast<float>(std::exp(static_cast<double>(l[i] - max)) / sum);
    if (prob > 0) kept.emplace_back(static_cast<int32_t>(i), prob);
  }
  std::stable_sort(kept.begin(), kept.end(), [](auto& a, auto& b) { return a.second > b.second; });
  return kept;
}

int32_t Sampler::next(std::span<float> logits, std::span<const int32_t> seen, size_t top_logprobs,
                      TokenLogprobs* logprobs) {
  scale(logits, seen, params_);
  std::vector<float> scaled;  // what the log-probabilities are of
  if (logprobs) scaled.assign(logits.begin(), logits.end());
  auto report = [&](int32_t id) {
    if (logprobs) *logprobs = token_logprobs(scaled, id, top_logprobs);
    return id;
  };
  truncate(logits, params_);
  if (params_.greedy) return report(argmax(logits));
  float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float& l : logits) {
    l = l == kNegInf ? 0.0f : std::exp(l - max);
    sum += l;
  }
  std::uniform_real_distribution<double> uniform(0.0, sum);
  double u = uniform(rng_), acc = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    acc += logits[i];
    if (logits[i] > 0 && u < acc) return report(static_cast<int32_t>(i));
  }
  return report(argmax(logits));
}

}  // namespace baichuan
