// Progress of a long command on stderr: a bar redrawn in place on a terminal, otherwise one line at
// every tenth of the work (for logs and CI).
#pragma once
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

// printf into a std::string, for the numbers in progress and summary lines.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace baichuan::cli
