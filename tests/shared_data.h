// Where the tests find ../shared (reference checkpoints, assets, data). A fresh clone may not have
// it: tests that need it skip with a message saying what is missing.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace baichuan::testing {

inline std::string shared_path(const std::string& relative) {
  const char* env = std::getenv("BAICHUAN_SHARED_DIR");
  return std::string(env && *env ? env : BAICHUAN_SHARED_DIR) + "/" + relative;
}

// A little-endian float32 file (the golden logits).
inline std::vector<float> read_f32_file(const std::string& path) {
  const std::string bytes = read_text_file(path);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

}  // namespace baichuan::testing

// Skips the current test unless `path` exists.
#define REQUIRE_SHARED(path)                                                                             \
  do {                                                                                                   \
    if (!::baichuan::file_exists(path))                                                                  \
      GTEST_SKIP() << "skipped: needs " << (path) << " from ../shared (absent in a fresh clone; CI has it)"; \
  } while (0)
