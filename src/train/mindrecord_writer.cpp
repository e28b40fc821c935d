#include "train/mindrecord_writer.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "train/mindrecord_format.h"
#include "train/mindrecord_index.h"

namespace baichuan::train {

using nlohmann::json;
namespace mr = mindrecord;

namespace {

struct BlobPage {
  int64_t start_row = 0, end_row = 0;  // end exclusive
  uint64_t used = 0;
};

struct RawPage {
  std::vector<std::pair<int64_t, uint64_t>> groups;  // (blob page_type_id, offset of its first record)
  uint64_t used = 0;
};

json row_groups(const std::vector<std::pair<int64_t, uint64_t>>& groups) {
  json list = json::array();
  for (auto [id, offset] : groups) list.push_back({{"id", id}, {"offset", offset}});
  if (list.empty()) list.push_back({{"id", 0}, {"offset", 0}});  // as Page::GetPage writes an empty list
  return list;
}

}  // namespace

struct MindRecordWriter::Shard {
  Shard(const std::string& path, uint64_t header_size)
      : path(path), name(std::filesystem::path(path).filename().string()), data(path), index(path + ".db", name) {
    data.skip_to(header_size);  // the header is written last
  }
  std::string path, name;
  AtomicFile data;
  mr::IndexWriter index;
  std::vector<BlobPage> blob_pages;  // page_id == page_type_id == position
  std::vector<RawPage> raw_pages;    // page_id == blob_pages.size() + position
  int64_t rows = 0;
};

MindRecordWriter::MindRecordWriter(const std::string& path, int64_t row_length, MindRecordOptions options)
    : row_length_(row_length), options_(std::move(options)) {
  const auto& o = options_;
  if (row_length <= 0) fail(path, ": MindRecord row length ", row_length, " must be positive");
  if (o.header_size < mr::kMinHeaderSize || o.header_size > mr::kMaxHeaderSize || o.header_size % 4)
    fail(path, ": MindRecord header size ", o.header_size, " must be a multiple of 4 in [16 KiB, 128 MiB]");
  if (o.page_size < mr::kMinPageSize || o.page_size > mr::kMaxPageSize || o.page_size % 4)
    fail(path, ": MindRecord page size ", o.page_size, " must be a multiple of 4 in [32 KiB, 256 MiB]");
  const uint64_t n = static_cast<uint64_t>(row_length);
  // The largest row: both columns all int32; the smallest: both all int8.
  const uint64_t max_record = 8 + 2 * (8 + 4 + (n + 3) / 4 + 4 * n);
  if (max_record > o.page_size)
    fail(path, ": a row of ", row_length, " tokens can take ", max_record, " bytes, more than the page size ", o.page_size);
  max_rows_per_blob_page_ = o.page_size / (8 + 2 * (8 + mr::min_compressed_size(n)));
  for (const std::string& p : mr::shard_paths(path, o.shards)) shards_.push_back(std::make_unique<Shard>(p, o.header_size));
}

MindRecordWriter::~MindRecordWriter() = default;

void MindRecordWriter::add(std::span<const int32_t> input_ids, std::span<const int32_t> labels) {
  const auto n = static_cast<size_t>(row_length_);
  if (input_ids.size() != n || labels.size() != n)
    fail("MindRecord row of ", input_ids.size(), " / ", labels.size(), " values, expected ", n);
  // The blob: per field in sorted order ("input_ids" < "labels"), [8-byte BE length][compressed column].
  blob_.clear();
  for (auto column : {input_ids, labels}) {
    const size_t at = blob_.size();
    blob_.append(8, '\0');
    mr::append_compressed_ints(blob_, column);
    std::string length;
    mr::append_be64(length, blob_.size() - at - 8);
    blob_.replace(at, 8, length);
  }
  // What the Python writer hands to C++ before compression: [8-byte length][int32 LE x n] per field.
  compression_size_ += static_cast<int64_t>(2 * (8 + 4 * n)) - static_cast<int64_t>(blob_.size());

  Shard& s = *shards_[static_cast<size_t>(rows_ % static_cast<int64_t>(shards_.size()))];
  const uint64_t record = 8 + blob_.size();
  const uint64_t page_size = options_.page_size;
  if (s.blob_pages.empty() || s.blob_pages.back().used + record > page_size) {
    // A new blob page is a new row group; its raw records go to one raw page, opened when the
    // current one might not hold a full group's records.
    const auto page_id = s.blob_pages.size();
    s.blob_pages.push_back({s.rows, s.rows, 0});
    s.data.skip_to(options_.header_size + page_id * page_size);
    const uint64_t group_raw_bytes = max_rows_per_blob_page_ * sizeof mr::kDummyRawRecord;
    if (s.raw_pages.empty() || s.raw_pages.back().used + group_raw_bytes > page_size) s.raw_pages.push_back({});
    s.raw_pages.back().groups.emplace_back(static_cast<int64_t>(page_id), s.raw_pages.back().used);
  }
  BlobPage& page = s.blob_pages.back();
  RawPage& raw = s.raw_pages.back();
  const int64_t page_id = static_cast<int64_t>(s.blob_pages.size() - 1);
  mr::IndexRow row;
  row.row_id = s.rows;
  row.page_id_raw = static_cast<int64_t>(s.raw_pages.size() - 1);  // shifted past the blob pages at commit
  row.page_offset_raw = static_cast<int64_t>(raw.used);
  row.page_offset_raw_end = static_cast<int64_t>(raw.used + sizeof mr::kDummyRawRecord);
  row.row_group_id = page_id;
  row.page_id_blob = page_id;
  row.page_offset_blob = static_cast<int64_t>(page.used);
  row.page_offset_blob_end = static_cast<int64_t>(page.used + record);
  s.index.add(row);

  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>((blob_.size() >> (8 * i)) & 0xFF);
  s.data.write(length, sizeof length);
  s.data.write(blob_);
  page.used += record;
  page.end_row = ++s.rows;
  raw.used += sizeof mr::kDummyRawRecord;
  ++rows_;
}

std::vector<std::string> MindRecordWriter::commit() {
  const auto& o = options_;
  if (rows_ < static_cast<int64_t>(shards_.size()))
    fail(shards_[0]->path, ": ", rows_, " rows cannot fill ", shards_.size(), " MindRecord shards (use fewer --shards)");
  json schema = json::array({{{"blob_fields", {"input_ids", "labels"}},
                              {"desc", o.desc},
                              {"schema",
                               {{"input_ids", {{"shape", {-1}}, {"type", "int32"}}},
                                {"labels", {{"shape", {-1}}, {"type", "int32"}}}}}}});
  json addresses = json::array();
  for (const auto& s : shards_) addresses.push_back(s->name);

  for (size_t shard_id = 0; shard_id < shards_.size(); ++shard_id) {
    Shard& s = *shards_[shard_id];
    const int64_t first_raw_page = static_cast<int64_t>(s.blob_pages.size());
    json pages = json::array();
    for (size_t i = 0; i < s.blob_pages.size(); ++i) {
      const BlobPage& p = s.blob_pages[i];
      pages.push_back({{"end_row_id", p.end_row},
                       {"page_id", i},
                       {"page_size", p.used},
                       {"page_type", "BLOB_DATA"},
                       {"page_type_id", i},
                       {"row_group_ids", row_groups({})},
                       {"shard_id", shard_id},
                       {"start_row_id", p.start_row}});
    }
    // The raw records are all the dummy {"id": 0}: each raw page is rows x 13 constant bytes.
    std::string records;
    for (size_t r = 0; r < s.raw_pages.size(); ++r) {
      const RawPage& p = s.raw_pages[r];
      const uint64_t page_id = static_cast<uint64_t>(first_raw_page) + r;
      s.data.skip_to(o.header_size + page_id * o.page_size);
      records.clear();
      for (uint64_t k = 0; k < p.used / sizeof mr::kDummyRawRecord; ++k)
        records.append(reinterpret_cast<const char*>(mr::kDummyRawRecord), sizeof mr::kDummyRawRecord);
      s.data.write(records);
      pages.push_back({{"end_row_id", 0},
                       {"page_id", page_id},
                       {"page_size", p.used},
                       {"page_type", "RAW_DATA"},
                       {"page_type_id", r},
                       {"row_group_ids", row_groups(p.groups)},
                       {"shard_id", shard_id},
                       {"start_row_id", 0}});
    }
    // ShardHeader::SerializeHeader puts the top-level keys in this order by hand.
    const std::string header = cat("{\"header_size\":", o.header_size, ",\"index_fields\":null,\"page\":", pages.dump(),
                                   ",\"page_size\":", o.page_size, ",\"compression_size\":", compression_size_,
                                   ",\"schema\":", schema.dump(), ",\"shard_addresses\":", addresses.dump(),
                                   ",\"shard_id\":", shard_id, ",\"statistics\":null,\"version\":\"", mr::kVersion, "\"}");
    if (8 + header.size() > o.header_size)
      fail(s.path, ": the MindRecord header takes ", 8 + header.size(), " bytes, more than the ", o.header_size,
           " reserved for it (use more --shards)");
    std::string head;
    for (int i = 0; i < 8; ++i) head += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
    head += header;
    s.data.write_at(0, head.data(), head.size());
    s.index.shift_raw_pages(first_raw_page);
    s.index.finish();
  }
  // Every file is complete: only now rename them into place.
  std::vector<std::string> files;
  for (auto& s : shards_) {
    s->data.commit();
    s->index.commit();
    files.push_back(s->path);
    files.push_back(s->path + ".db");
  }
  return files;
}

}  // namespace baichuan::train
