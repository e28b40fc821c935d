// The official code's outputs stored beside each reference checkpoint (<folder>/golden.json and the
// float32 logits files it names), and the one measure the tests compare logits by.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "shared_data.h"

namespace baichuan::testing {

inline std::string golden_json_path(const std::string& folder) { return folder + "/golden.json"; }

// <folder>/golden.json. A test that may run without ../shared first does REQUIRE_SHARED(golden_json_path(folder)).
inline nlohmann::json read_golden(const std::string& folder) {
  return nlohmann::json::parse(read_text_file(golden_json_path(folder)));
}

// The last-position logits the official code gave for one of golden.json's "prompts".
inline std::vector<float> golden_last_logits(const std::string& folder, const nlohmann::json& prompt) {
  return read_f32_file(folder + "/" + prompt.at("last_logits_file").get<std::string>());
}

// max |got - want| / max |want| (llm.c's check_tensor as one number a test bounds). Infinity when the
// sizes differ, a value is NaN or `want` is all zeros, so that a bound fails instead of passing.
inline double max_relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  constexpr double kFails = std::numeric_limits<double>::infinity();
  if (got.size() != want.size()) return kFails;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    if (std::isnan(d)) return kFails;
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return scale > 0 ? diff / scale : kFails;
}

}  // namespace baichuan::testing
