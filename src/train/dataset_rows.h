// Labelled rows held in memory, as the JSON and MindRecord readers return them.
#pragma once
#include <cstdint>
#include <vector>

namespace baichuan::train {

// Rows of the same length, one after another: record i is [i * row_length, (i + 1) * row_length) of
// each array.
struct TokenRows {
  int64_t row_length = 0;
  std::vector<int32_t> input_ids, labels;
  int64_t size() const { return row_length ? static_cast<int64_t>(input_ids.size()) / row_length : 0; }
};

}  // namespace baichuan::train
