// Shared by the preprocess / dataset / MindRecord tests: a scratch folder per test, small files, and
// where the real tokenizer and BELLE samples are.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "shared_data.h"
#include "test_files.h"

namespace baichuan::testing {

// A fresh folder named after the running test, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    static int counter = 0;
    path_ = test_files_dir() / ("pp-" + std::to_string(counter++) + "-" + info->test_suite_name() + "." + info->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;  // never throw from a destructor: a leftover folder is not worth aborting the tests
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  // The names of the files in the folder (temporary files included: there should be none left).
  std::set<std::string> files() const {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.insert(e.path().filename().string());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string tokenizer_path() { return shared_path("assets/baichuan2/tokenizer.model"); }
inline std::string belle_path(const std::string& name) { return shared_path("data/belle/" + name); }
inline std::string golden_preprocess_path(const std::string& belle_name) {
  return shared_path("reference/train/preprocess_" + belle_name + "_512.json");
}

}  // namespace baichuan::testing
