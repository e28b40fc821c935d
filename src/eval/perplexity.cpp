#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace baichuan::eval {

void validate(const PerplexityOptions& options) {
  if (options.ctx < 2) fail("--ctx must be at least 2 tokens (got ", options.ctx, ")");
  if (options.stride < 1 || options.stride > options.ctx)
    fail("--stride must be between 1 and --ctx (", options.ctx, ") (got ", options.stride, ")");
  if (options.chunk < 1) fail("the chunk size must be positive (got ", options.chunk, ")");
}

std::vector<Window> perplexity_windows(int64_t n_tokens, const PerplexityOptions& options) {
  validate(options);
  if (n_tokens < 2)
    fail("the text has ", n_tokens, " token", n_tokens == 1 ? "" : "s", "; perplexity needs at least 2");
  std::vector<Window> windows;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n_tokens; begin += options.stride) {
    int64_t end = std::min(begin + options.ctx, n_tokens);
    // Tokens before prev_end were scored by an earlier window; token `begin` has no prediction here.
    windows.push_back({begin, end, std::max(begin + 1, prev_end)});
    prev_end = end;
    if (end == n_tokens) break;
  }
  return windows;
}

double log_sum_exp(std::span<const float> logits) {
  float max = -INFINITY;
  for (float x : logits) max = std::max(max, x);
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  return max + std::log(sum);
}

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids, const PerplexityOptions& options,
                            ThreadPool& pool, const std::function<void(const WindowDone&)>& on_window,
                            const std::function<void(const ScoredToken&)>& on_token) {
  const auto start = std::chrono::steady_clock::now();
  const auto n = static_cast<int64_t>(ids.size());
  const std::vector<Window> windows = perplexity_windows(n, options);
  int64_t total = 0;
  for (const Window& w : windows) total += w.end - w.first_scored;
  const int64_t vocab = model.config().vocab_size;

  KvCache cache = model.new_cache(std::min(options.ctx, n));
  ModelContext context;
  std::vector<float> logits;
  std::vector<double> lse, nll;
  PerplexityResult result;
  result.windows = static_cast<int64_t>(windows.size());
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const Window& w = windows[wi];
    cache.clear();  // each window sees only its own tokens
    // Context rows need no logits: the row of position p predicts token p + 1, so the rows that
    // matter are [first_scored - 1, end - 1) and the window's last token is never fed.
    const int64_t first_row = w.first_scored - 1;
    for (int64_t b = w.begin; b < first_row; b += options.chunk) {
      SequenceStep step{&cache, ids.subspan(b, std::min(options.chunk, first_row - b)), false, &logits};
      model.forward(context, {&step, 1}, pool);
    }
    for (int64_t b = first_row; b < w.end - 1; b += options.chunk) {
      const int64_t rows = std::min(options.chunk, w.end - 1 - b);
      SequenceStep step{&cache, ids.subspan(b, rows), true, &logits};
      model.forward(context, {&step, 1}, pool);
      lse.assign(rows, 0);
      nll.assign(rows, 0);
      pool.parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
          std::span<const float> row(logits.data() + r * vocab, vocab);
          lse[r] = log_sum_exp(row);
          nll[r] = lse[r] - row[ids[b + r + 1]];
        }
      });
      for (int64_t r = 0; r < rows; ++r) {  // summed in text order: the result does not depend on threads
        result.nll_sum += nll[r];
        if (on_token)
          on_token({result.tokens, b + r + 1, ids[b + r + 1], std::span<const float>(logits.data() + r * vocab, vocab),
                    lse[r]});
        ++result.tokens;
      }
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_window)
      on_window({static_cast<int64_t>(wi) + 1, result.windows, result.tokens, total, result.nll_sum, result.seconds});
  }
  result.nll_mean = result.tokens ? result.nll_sum / static_cast<double>(result.tokens) : 0;
  result.perplexity = std::exp(result.nll_mean);
  return result;
}

}  // namespace baichuan::eval
