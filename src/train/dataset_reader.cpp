#include "train/dataset_reader.h"

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "train/dataset_file.h"
#include "train/dataset_json.h"
#include "train/mindrecord_reader.h"

namespace baichuan::train {

DatasetFormat parse_dataset_format(const std::string& name) {
  if (name == "tokens") return DatasetFormat::Tokens;
  if (name == "json") return DatasetFormat::Json;
  if (name == "mindrecord") return DatasetFormat::MindRecord;
  fail("unknown dataset format '", name, "' (tokens, json or mindrecord)");
}

const char* dataset_format_name(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::Json: return "json";
    case DatasetFormat::MindRecord: return "mindrecord";
    case DatasetFormat::Tokens: break;
  }
  return "tokens";
}

DatasetFormat detect_dataset_format(const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such file");
  if (std::filesystem::is_directory(path)) fail(path, ": is a directory, not a dataset file");
  if (is_token_file(path)) return DatasetFormat::Tokens;
  if (is_mindrecord_file(path)) return DatasetFormat::MindRecord;
  return DatasetFormat::Json;
}

namespace {

// preprocess -o OUT --format mindrecord --shards K writes OUT0.. (or OUT00.., OUT000..): OUT names them.
std::string first_shard_if_prefix(const std::string& path) {
  if (file_exists(path)) return path;
  for (const char* suffix : {"0", "00", "000"})
    if (file_exists(path + suffix) && is_mindrecord_file(path + suffix)) return path + suffix;
  return path;
}

}  // namespace

TokenDataset TokenDataset::open(const std::string& given_path) {
  const std::string path = first_shard_if_prefix(given_path);
  TokenDataset d;
  d.path_ = path;
  d.format_ = detect_dataset_format(path);
  if (d.format_ == DatasetFormat::Tokens) {
    TokenFile f = open_token_file(path);
    d.size_ = static_cast<int64_t>(f.header.record_count);
    d.row_length_ = f.header.row_length;
    d.stride_ = 2 * d.row_length_;
    d.input_base_ = f.records;
    d.labels_base_ = f.records + d.row_length_;
    d.map_ = std::move(f.map);
  } else {
    auto rows = std::make_shared<TokenRows>(d.format_ == DatasetFormat::Json ? read_json_dataset(path)
                                                                             : read_mindrecord_dataset(path));
    d.size_ = rows->size();
    d.row_length_ = rows->row_length;
    d.stride_ = d.row_length_;
    d.input_base_ = rows->input_ids.data();
    d.labels_base_ = rows->labels.data();
    d.rows_ = std::move(rows);
  }
  if (d.size_ == 0) fail(path, ": no records");
  return d;
}

std::span<const int32_t> TokenDataset::input_ids(int64_t i) const {
  if (i < 0 || i >= size_) fail(path_, ": record ", i, " out of range [0, ", size_, ")");
  return {input_base_ + i * stride_, static_cast<size_t>(row_length_)};
}

std::span<const int32_t> TokenDataset::labels(int64_t i) const {
  if (i < 0 || i >= size_) fail(path_, ": record ", i, " out of range [0, ", size_, ")");
  return {labels_base_ + i * stride_, static_cast<size_t>(row_length_)};
}

}  // namespace baichuan::train
