// Sliding-window perplexity, as Hugging Face's "Perplexity of fixed-length models" defines it:
// windows of `ctx` tokens start every `stride` tokens; each window scores only the tokens past the
// end of the previous window (the earlier ones are context), and the first window scores every
// token but its first (nothing predicts token 0). PPL = exp(mean negative log-likelihood).
// With stride == ctx the windows do not overlap and each window's first token is not scored.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"

namespace baichuan::eval {

struct PerplexityOptions {
  int64_t ctx = 512;
  int64_t stride = 256;
  int64_t chunk = 512;  // rows fed per forward step: bounds the logits buffer (rows x vocab floats)
};

// One window of the strided scan: tokens [begin, end) are fed, those in [first_scored, end) scored.
struct Window {
  int64_t begin, end, first_scored;
};

// The windows for a text of n_tokens tokens; throws Error for ctx < 2, stride outside [1, ctx] or
// fewer than 2 tokens.
std::vector<Window> perplexity_windows(int64_t n_tokens, const PerplexityOptions& options);
void validate(const PerplexityOptions& options);

// Progress after each window.
struct WindowDone {
  int64_t window, windows;              // 1-based index of the window just finished, and the total
  int64_t tokens_scored, tokens_total;  // so far, and over the whole text
  double nll_sum, seconds;
};

// A scored token: the logits that predict it (vocab floats) and their log-sum-exp.
struct ScoredToken {
  int64_t index;     // 0-based among all scored tokens, in text order
  int64_t position;  // in the text
  int32_t target;
  std::span<const float> logits;
  double log_sum_exp;
};

struct PerplexityResult {
  double perplexity = 0, nll_mean = 0, nll_sum = 0, seconds = 0;
  int64_t tokens = 0, windows = 0;  // tokens scored
};

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids, const PerplexityOptions& options,
                            ThreadPool& pool, const std::function<void(const WindowDone&)>& on_window = {},
                            const std::function<void(const ScoredToken&)>& on_token = {});

// log(sum(exp(logits))) in double, shifted by the maximum so no term overflows.
double log_sum_exp(std::span<const float> logits);

}  // namespace baichuan::eval
