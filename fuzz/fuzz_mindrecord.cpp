// libFuzzer target for the MindRecord reader (data file + SQLite .db index). The input is
//   [1 byte: k % 9 index rows][k x 7 int64 LE: PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END,
//    ROW_GROUP_ID, PAGE_ID_BLOB, PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END][the data file]
// The .db is written by the project's IndexWriter (ROW_IDs 0..k-1), so the fuzzer reaches the
// index's offsets and the pages they point at without having to mutate SQLite's file format, which
// SQLite fuzzes itself. Properties of a set that reads: rows of one positive length, as many labels as
// input ids; through TokenDataset::open too, with the same rows.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "fuzz_support.h"
#include "train/dataset_reader.h"
#include "train/mindrecord_index.h"
#include "train/mindrecord_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using fuzz_support::property_failed;
  namespace mr = train::mindrecord;
  if (size == 0) return 0;
  const size_t k = data[0] % 9;
  const size_t index_bytes = 1 + k * 7 * 8;
  if (size < index_bytes) return 0;
  const auto& dir = fuzz_support::temp_dir();
  const std::string path = dir.write("data.mindrecord", fuzz_support::as_text(data + index_bytes, size - index_bytes));
  dir.remove("data.mindrecord.db");
  {
    mr::IndexWriter index(path + ".db", "data.mindrecord");
    for (size_t i = 0; i < k; ++i) {
      int64_t v[7];
      std::memcpy(v, data + 1 + i * 56, sizeof v);
      index.add({static_cast<int64_t>(i), v[0], v[1], v[2], v[3], v[4], v[5], v[6]});
    }
    index.commit();
  }
  train::TokenRows rows;
  try {
    rows = train::read_mindrecord_dataset(path);
  } catch (const Error&) {
    return 0;
  }
  if (rows.row_length <= 0 || rows.input_ids.size() != rows.labels.size() ||
      rows.input_ids.size() % static_cast<size_t>(rows.row_length) != 0)
    property_failed("rows of length ", rows.row_length, ": ", rows.input_ids.size(), " input ids, ", rows.labels.size(), " labels");
  try {
    auto set = train::TokenDataset::open(path);
    if (set.size() != rows.size() || set.row_length() != rows.row_length)
      property_failed("TokenDataset::open sees ", set.size(), " rows of ", set.row_length(), ", the reader ", rows.size(),
                      " of ", rows.row_length);
    for (int64_t i = 0; i < set.size(); ++i) {
      auto ids = set.input_ids(i);
      if (!std::equal(ids.begin(), ids.end(), rows.input_ids.begin() + i * rows.row_length))
        property_failed("row ", i, " differs through TokenDataset::open");
    }
  } catch (const Error& e) {
    property_failed("a MindRecord set the reader reads does not open as a TokenDataset: ", e.what());
  }
  return 0;
}
