// The fine-tuning data a trainer reads: train::TokenDataset opens what `baichuan preprocess` writes in
// any of its three formats, told apart by content, and gives every record's input_ids and labels:
//   tokens      the project's own format (dataset_file.h), memory-mapped: nothing is loaded
//   json        a list of {"id", "input_ids", "labels"} (dataset_json.h), read into memory
//   mindrecord  a MindRecord file set (mindrecord_reader.h), read into memory (all shards)
// Rows follow the official fine-tune script: input padded with 0 (attention mask input_ids != 0),
// labels -100 where nothing is learnt, and the loss compares logits[t] with labels[t + 1]. A json or
// tokens file has rows of --seq-length; MindRecord rows are seq_length + 1 (MindFormers' layout).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "train/dataset_rows.h"

namespace baichuan {
class MappedFile;
}

namespace baichuan::train {

enum class DatasetFormat { Tokens, Json, MindRecord };
DatasetFormat parse_dataset_format(const std::string& name);  // "tokens", "json", "mindrecord"
const char* dataset_format_name(DatasetFormat format);
// By the file's first bytes: the token file magic, a MindRecord header, else JSON.
DatasetFormat detect_dataset_format(const std::string& path);

class TokenDataset {
 public:
  // Throws Error naming the path and what is wrong (a truncated token file, a record of another
  // length, a MindRecord without its .db, no records). A MindRecord set of several shards opens from
  // any shard, or from the -o prefix preprocess was given.
  static TokenDataset open(const std::string& path);

  DatasetFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  int64_t row_length() const { return row_length_; }
  // Record i (0 <= i < size()): row_length values each, valid while this dataset (or a copy) lives.
  std::span<const int32_t> input_ids(int64_t i) const;
  std::span<const int32_t> labels(int64_t i) const;

 private:
  TokenDataset() = default;
  DatasetFormat format_ = DatasetFormat::Tokens;
  std::string path_;
  int64_t size_ = 0, row_length_ = 0;
  // Either a mapped token file (records interleaved) or rows read into memory: row i's input ids are
  // at input_base_ + i * stride_, its labels at labels_base_ + i * stride_.
  std::shared_ptr<const MappedFile> map_;
  std::shared_ptr<const TokenRows> rows_;
  const int32_t* input_base_ = nullptr;
  const int32_t* labels_base_ = nullptr;
  int64_t stride_ = 0;
};

}  // namespace baichuan::train
