// Where the tests write their files: one folder per test process, <gtest TempDir>/baichuan-tests-<pid>
// (ctest runs the cases as parallel processes, so no two share it), created on first use and removed
// when the process's tests end. The suite used to leave thousands of files and GiBs in /tmp.
// BAICHUAN_KEEP_TEST_FILES=1 keeps the folder and says where it is, for debugging.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace baichuan::testing {

inline std::filesystem::path test_files_dir_path() {
  return std::filesystem::path(::testing::TempDir()) / ("baichuan-tests-" + std::to_string(getpid()));
}

// The folder, created on the first call (emptied first: a crashed process may have left one under a
// reused pid).
inline const std::filesystem::path& test_files_dir() {
  static const std::filesystem::path dir = [] {
    const auto path = test_files_dir_path();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

// A path in the folder: "<prefix>_<name>" (the prefix names the test file, for a kept folder).
inline std::string temp_path(const std::string& prefix, const std::string& name) {
  return (test_files_dir() / (prefix + "_" + name)).string();
}

// Removes the folder after the last test of the process. An Environment rather than a static's
// destructor: a forked child that exits must not remove its parent's files.
class TestFilesCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    const auto path = test_files_dir_path();
    if (!std::filesystem::exists(path)) return;
    const char* keep = std::getenv("BAICHUAN_KEEP_TEST_FILES");
    if (keep && *keep && std::string(keep) != "0") {
      std::fprintf(stderr, "test files kept in %s (BAICHUAN_KEEP_TEST_FILES)\n", path.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) std::fprintf(stderr, "could not remove %s: %s\n", path.c_str(), ec.message().c_str());
  }
};

// Registered once (an inline variable) by every test binary that includes this header, before main.
inline ::testing::Environment* const test_files_cleanup = ::testing::AddGlobalTestEnvironment(new TestFilesCleanup);

}  // namespace baichuan::testing
