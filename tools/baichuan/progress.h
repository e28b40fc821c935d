// Progress of a long command on stderr: a bar redrawn in place on a terminal, otherwise one line at
// every tenth of the work (for logs and CI).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace baichuan::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  // `done` of `total` units after `seconds`; `detail` goes after the counts (e.g. "ppl 12.3").
  void update(long long done, long long total, double seconds, const std::string& detail);

 private:
  std::string label_;
  bool tty_;
  int reported_tenths_ = 0;
};

// Prompts longer than this are fed in chunks of half of it, showing their progress and speed (generate,
// chat). Each chunk pays one output layer: ~10% of prompt speed on the tiny test model (hidden 32, where
// that layer over the 125,696-token vocabulary dominates), negligible on a 7B.
constexpr int64_t kLongPromptTokens = 1024;

// A GenerateOptions::on_prompt_progress that draws `bar` with the prompt's tokens/s since `start`.
std::function<void(int64_t, int64_t)> prompt_progress(ProgressBar& bar, std::chrono::steady_clock::time_point start);

// printf into a std::string, for the numbers in progress and summary lines.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace baichuan::cli
