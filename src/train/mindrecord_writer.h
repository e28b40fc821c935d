// Writes `baichuan preprocess --format mindrecord`: a MindRecord file set as MindFormers'
// belle_preprocess.py writes it (schema {"input_ids", "labels": int32, shape [-1]}, desc
// "belle_baichuan2", rows of seq_length + 1), one data file and one .db index per shard.
//
// Streaming: rows go to blob pages as they come (a page slot is skipped as a hole when the next row
// does not fit), their index rows to SQLite in one transaction. The raw pages (a constant dummy
// record per row) follow all blob pages, and the header at offset 0 is written last. Rows are dealt
// to the shards in turn (MindSpore's own writer picks shards at random).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace baichuan::train {

struct MindRecordOptions {
  int shards = 1;
  std::string desc = "belle_baichuan2";
  // MindSpore's defaults are 16 MiB / 32 MiB; the header holds ~5000 page entries at 1 MiB, and
  // smaller pages keep the file's apparent size (its unused page tails are holes) down.
  uint64_t header_size = 1 << 20;
  uint64_t page_size = 1 << 24;
};

class MindRecordWriter {
 public:
  // `path` as FileWriter's file_name: the data file itself for one shard, else the prefix of
  // path0 ... pathK-1. Creates the temporary files now.
  MindRecordWriter(const std::string& path, int64_t row_length, MindRecordOptions options = {});
  ~MindRecordWriter();

  // Both spans hold row_length values.
  void add(std::span<const int32_t> input_ids, std::span<const int32_t> labels);
  // Writes the raw pages, headers and indexes, then renames every file into place; returns the files.
  std::vector<std::string> commit();

  int64_t rows() const { return rows_; }

 private:
  struct Shard;
  int64_t row_length_;
  MindRecordOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;
  int64_t rows_ = 0;
  int64_t compression_size_ = 0;  // bytes saved by the integer compression, over all shards
  uint64_t max_rows_per_blob_page_ = 0;
  std::string blob_;  // scratch for one row
};

}  // namespace baichuan::train
