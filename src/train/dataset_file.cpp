#include "train/dataset_file.h"

#include <bit>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "train/dataset_sample.h"

namespace baichuan::train {

static_assert(std::endian::native == std::endian::little, "token files are little-endian, read in place");

TokenFileWriter::TokenFileWriter(const std::string& path, int64_t row_length) : file_(path) {
  if (row_length <= 0 || row_length > INT32_MAX) fail(path, ": row length ", row_length, " out of range");
  std::memcpy(header_.magic, kTokenFileMagic, sizeof header_.magic);
  header_.version = kTokenFileVersion;
  header_.row_length = static_cast<uint32_t>(row_length);
  header_.pad_id = kPadId;
  header_.ignore_index = kIgnoreIndex;
  header_.data_offset = sizeof(TokenFileHeader);
  file_.skip_to(sizeof(TokenFileHeader));  // the header is written last, when the counts are known
}

void TokenFileWriter::add(std::span<const int32_t> input_ids, std::span<const int32_t> labels, bool truncated) {
  if (input_ids.size() != header_.row_length || labels.size() != header_.row_length)
    fail("token file row of ", input_ids.size(), " / ", labels.size(), " values, expected ", header_.row_length);
  file_.write(input_ids.data(), input_ids.size_bytes());
  file_.write(labels.data(), labels.size_bytes());
  ++header_.record_count;
  header_.token_count += static_cast<uint64_t>(count_tokens(input_ids));
  header_.label_count += static_cast<uint64_t>(count_label_tokens(labels));
  header_.truncated_count += truncated ? 1 : 0;
}

void TokenFileWriter::commit() {
  file_.write_at(0, &header_, sizeof header_);
  file_.commit();
}

bool is_token_file(const std::string& path) {
  char magic[sizeof kTokenFileMagic] = {};
  std::ifstream in(path, std::ios::binary);
  return in.read(magic, sizeof magic) && std::memcmp(magic, kTokenFileMagic, sizeof magic) == 0;
}

TokenFile open_token_file(const std::string& path) {
  TokenFile f;
  f.map = MappedFile::open(path);
  if (f.map->size() < sizeof(TokenFileHeader)) fail(path, ": ", f.map->size(), " bytes, too short for a token file header");
  std::memcpy(&f.header, f.map->data(), sizeof f.header);
  const TokenFileHeader& h = f.header;
  if (std::memcmp(h.magic, kTokenFileMagic, sizeof h.magic) != 0) fail(path, ": not a token file (no BCTOKENS magic)");
  if (h.version != kTokenFileVersion) fail(path, ": token file version ", h.version, ", this build reads ", kTokenFileVersion);
  if (h.row_length == 0) fail(path, ": row_length is 0");
  if (h.data_offset != sizeof(TokenFileHeader)) fail(path, ": data_offset ", h.data_offset, ", expected 64");
  if (h.pad_id != kPadId || h.ignore_index != kIgnoreIndex)
    fail(path, ": pad_id ", h.pad_id, " / ignore_index ", h.ignore_index, ", expected 0 / -100");
  const uint64_t record_bytes = uint64_t{h.row_length} * 2 * sizeof(int32_t);
  if (h.record_count > (f.map->size() - sizeof h) / record_bytes ||
      f.map->size() != sizeof h + h.record_count * record_bytes)
    fail(path, ": ", f.map->size(), " bytes, but the header promises ", h.record_count, " records of ", h.row_length,
         " tokens (", sizeof h, " + ", h.record_count, " x ", record_bytes, " bytes); the file is truncated or damaged");
  f.records = reinterpret_cast<const int32_t*>(f.map->data() + sizeof h);
  return f;
}

}  // namespace baichuan::train
