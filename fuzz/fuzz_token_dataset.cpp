// libFuzzer target for train::TokenDataset::open on one file: the project's token file (memory-mapped)
// or a JSON list of {"input_ids", "labels"}, told apart by content (a MindRecord file finds no .db:
// fuzz_mindrecord covers it). Properties of a data set that opens: at least one row, every row of
// row_length input ids and labels, all readable.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "fuzz_support.h"
#include "train/dataset_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using fuzz_support::property_failed;
  const std::string path = fuzz_support::temp_dir().write("data.tokens", fuzz_support::as_text(data, size));
  try {
    auto set = train::TokenDataset::open(path);
    if (set.size() <= 0 || set.row_length() <= 0) property_failed(set.size(), " rows of length ", set.row_length());
    int64_t sum = 0;
    for (int64_t i = 0; i < set.size(); ++i) {
      auto ids = set.input_ids(i);
      auto labels = set.labels(i);
      if (static_cast<int64_t>(ids.size()) != set.row_length() || static_cast<int64_t>(labels.size()) != set.row_length())
        property_failed("row ", i, " has ", ids.size(), " ids and ", labels.size(), " labels, rows are ", set.row_length());
      for (int32_t v : ids) sum += v;
      for (int32_t v : labels) sum += v;
    }
    volatile int64_t sink = sum;
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
