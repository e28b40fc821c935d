// The project's own dataset format: what `baichuan preprocess` writes by default and `finetune --data`
// memory-maps. Every record has the same size, so record i is found by arithmetic and the file is used
// in place, whatever its size.
//
//   offset 0    TokenFileHeader (64 bytes, below)
//   offset 64   record 0: int32 input_ids[row_length], then int32 labels[row_length]
//               record 1, ... up to record_count - 1
//   file size   exactly 64 + record_count * row_length * 8 bytes (a shorter or longer file is refused)
//
// All numbers little-endian. Rows follow the official fine-tune script (see dataset_sample.h): input
// padded with 0, labels padded with -100; the loss compares logits[t] with labels[t + 1]. The suggested
// file extension is .tokens; readers go by the magic, not the name.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/atomic_file.h"
#include "core/mapped_file.h"

namespace baichuan::train {

inline constexpr char kTokenFileMagic[8] = {'B', 'C', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr uint32_t kTokenFileVersion = 1;

struct TokenFileHeader {
  char magic[8];              // "BCTOKENS"
  uint32_t version;           // 1
  uint32_t row_length;        // tokens per row (preprocess --seq-length)
  uint64_t record_count;
  uint64_t token_count;       // input ids that are not padding, over all records
  uint64_t label_count;       // labels[t] != -100 for t >= 1, over all records (what the loss trains on)
  uint64_t truncated_count;   // records cut to row_length
  int32_t pad_id;             // 0
  int32_t ignore_index;       // -100
  uint64_t data_offset;       // 64: where record 0 starts
};
static_assert(sizeof(TokenFileHeader) == 64);

class TokenFileWriter {
 public:
  TokenFileWriter(const std::string& path, int64_t row_length);  // creates the temporary file now
  // Both spans hold row_length values.
  void add(std::span<const int32_t> input_ids, std::span<const int32_t> labels, bool truncated);
  void commit();  // writes the header and renames the file into place

 private:
  AtomicFile file_;
  TokenFileHeader header_{};
};

// A mapped token file, checked against its header: `records` points at record 0.
struct TokenFile {
  std::shared_ptr<MappedFile> map;
  TokenFileHeader header{};
  const int32_t* records = nullptr;
};
bool is_token_file(const std::string& path);  // starts with the magic
TokenFile open_token_file(const std::string& path);  // throws Error naming the path and what is wrong

}  // namespace baichuan::train
