// `baichuan preprocess`: conversations in (BELLE or Alpaca, JSON or JSON Lines), labelled rows out
// (tokens, json or mindrecord), streamed record by record with a summary of what was written. Plain
// text records (layout Text) are pre-training rows: the text's ids then EOS, labels = input ids, one
// record per row or, with `pack`, concatenated and cut into full rows.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/belle_records.h"
#include "train/dataset_reader.h"
#include "train/mindrecord_writer.h"

namespace baichuan {
class ThreadPool;
class Tokenizer;
}  // namespace baichuan

namespace baichuan::train {

struct PreprocessOptions {
  std::string input, output;
  DatasetFormat format = DatasetFormat::Tokens;
  InputLayout layout = InputLayout::Auto;
  int64_t seq_length = 0;  // rows of seq_length (tokens, json) or seq_length + 1 (mindrecord)
  bool skip_bad = false;   // count and list bad records instead of stopping at the first
  bool pack = false;       // layout Text only: records run on across rows, so no row is padded but the last
  MindRecordOptions mindrecord;
};

struct PreprocessProgress {
  uint64_t bytes_read = 0, bytes_total = 0;
  int64_t records = 0;
};

inline constexpr size_t kListedBadRecords = 100;  // the summary lists the first ones; all are counted

struct PreprocessSummary {
  InputLayout layout = InputLayout::Auto;
  bool json_lines = false;
  int64_t row_length = 0;
  int64_t records = 0;       // written
  int64_t rows = 0;          // rows written: records, or fewer when packed
  int64_t bad_records = 0;   // skipped with skip_bad
  std::vector<BadRecord> bad;  // the first kListedBadRecords of them
  int64_t truncated = 0;     // records longer than a row, cut from the right
  int64_t tokens = 0;        // input ids written, padding not counted
  int64_t dropped_tokens = 0;  // ids cut off by truncation
  int64_t label_tokens = 0;  // labels the loss trains on (labels[t] != -100, t >= 1)
  std::vector<std::string> files;
  double seconds = 0;
};

// A pre-training row of a text record: its ids (no BOS, as the official tokenizer encodes) then EOS,
// labels the same ids. Cut to row_length from the right and padded (input 0, labels -100), except
// that row_length 0 keeps the whole record (for packing).
void label_text(const Tokenizer& tokenizer, const std::string& text, int64_t row_length, LabelledRow& row);

// Reads, labels and writes; the output files appear (renamed into place) only when everything went
// well. Tokenization runs on `pool` when given. Throws Error naming the file, record and field of the
// first bad record unless skip_bad, and when no record is left to write.
PreprocessSummary preprocess_dataset(const Tokenizer& tokenizer, const PreprocessOptions& options, ThreadPool* pool,
                                     const std::function<void(const PreprocessProgress&)>& progress = {});

}  // namespace baichuan::train
