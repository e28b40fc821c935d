#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <iostream>

namespace baichuan::cli {

std::string strprintf(const char* fmt, ...) {
  char s[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(s, sizeof s, fmt, args);
  va_end(args);
  return s;
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), tty_(isatty(STDERR_FILENO)) {}

void ProgressBar::update(long long done, long long total, double seconds, const std::string& detail) {
  const double fraction = static_cast<double>(done) / static_cast<double>(std::max(total, 1LL));
  const double eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0;
  const bool last = done >= total;
  const std::string tail = strprintf(" %lld/%lld, ", done, total) + detail +
                           strprintf(", %.1f s, ETA %.1f s", seconds, eta);
  if (tty_) {
    const int width = 30, filled = static_cast<int>(fraction * width);
    std::cerr << "\r" << label_ << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
              << strprintf("%3.0f%%", fraction * 100) << tail << "\033[K" << (last ? "\n" : "") << std::flush;
  } else if (const int tenths = static_cast<int>(fraction * 10); tenths > reported_tenths_ || last) {
    reported_tenths_ = tenths;
    std::cerr << label_ << ": " << strprintf("%3.0f%%", fraction * 100) << tail << "\n";
  }
}

std::function<void(int64_t, int64_t)> prompt_progress(ProgressBar& bar, std::chrono::steady_clock::time_point start) {
  return [&bar, start](int64_t done, int64_t total) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bar.update(done, total, seconds, strprintf("%.1f tokens/s", static_cast<double>(done) / std::max(seconds, 1e-9)));
  };
}

}  // namespace baichuan::cli
