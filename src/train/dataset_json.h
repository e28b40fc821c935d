// `baichuan preprocess --format json`: a JSON list of {"id", "input_ids", "labels"}, written byte for
// byte as Python's json.dumps writes the same list (", " and ": " separators, non-ASCII escaped as
// \uXXXX), which is how the official golden files were made; and the reader of such a list.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "train/dataset_rows.h"

namespace baichuan::train {

class JsonDatasetWriter {
 public:
  explicit JsonDatasetWriter(const std::string& path);  // creates the temporary file now
  void add(const std::string& id, std::span<const int32_t> input_ids, std::span<const int32_t> labels);
  void commit();  // closes the list and renames the file into place

 private:
  AtomicFile file_;
  std::string buffer_;
  int64_t records_ = 0;
};

// A string as Python's json.dumps(ensure_ascii=True) quotes it.
std::string python_json_string(const std::string& utf8);

// Reads a JSON list of {"input_ids": [...], "labels": [...], ...} (other keys ignored) record by record.
// Throws Error naming the file, the record and the field when a record is missing an array, holds a
// value outside int32, or has a length other than the first record's.
TokenRows read_json_dataset(const std::string& path);

}  // namespace baichuan::train
