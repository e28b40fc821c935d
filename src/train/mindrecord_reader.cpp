#include "train/mindrecord_reader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "train/mindrecord_format.h"
#include "train/mindrecord_index.h"

namespace baichuan::train {

using nlohmann::json;
namespace mr = mindrecord;
namespace fs = std::filesystem;

namespace {

struct Column {
  std::string name, type;  // type: int32, int64, or anything else (skipped)
};

struct ShardHeader {
  json header;
  uint64_t header_size = 0, page_size = 0;
  std::vector<Column> blob_columns;  // in the order the blobs hold them: sorted names
  bool compressed = false;
};

uint64_t unsigned_field(const json& object, const char* key, const std::string& what) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) fail(what, ": '", key, "' missing or not an unsigned integer");
  return it->get<uint64_t>();
}

ShardHeader read_header(const MappedFile& file) {
  const std::string& what = file.path();
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  if (file.size() < 8) fail(what, ": too short for a MindRecord header");
  const uint64_t n = mr::read_le64(bytes);
  if (n == 0 || n > file.size() - 8) fail(what, ": header length ", n, " does not fit the file's ", file.size(), " bytes");
  ShardHeader h;
  h.header = parse_json(std::string_view(reinterpret_cast<const char*>(bytes + 8), n), what + " (MindRecord header)");
  const json& j = h.header;
  if (!j.is_object()) fail(what, ": the MindRecord header is not a JSON object");
  h.header_size = unsigned_field(j, "header_size", what);
  h.page_size = unsigned_field(j, "page_size", what);
  if (8 + n > h.header_size) fail(what, ": header of ", n, " bytes overflows header_size ", h.header_size);
  for (const char* key : {"page", "schema", "shard_addresses", "shard_id", "version", "index_fields", "statistics"})
    if (!j.contains(key)) fail(what, ": the MindRecord header has no '", key, "'");
  const std::string version = j["version"].is_string() ? j["version"].get<std::string>() : "";
  if (version != "2.0" && version != "3.0") fail(what, ": MindRecord version '", version, "', expected 2.0 or 3.0");
  if (!j["page"].is_array() || !j["shard_addresses"].is_array() || j["shard_addresses"].empty())
    fail(what, ": 'page' and 'shard_addresses' must be lists");
  const json& schemas = j["schema"];
  if (!schemas.is_array() || schemas.size() != 1 || !schemas[0].contains("schema") || !schemas[0]["schema"].is_object())
    fail(what, ": expected one schema in the MindRecord header");
  // Blob fields are the array fields ({type, shape}) and bytes; MindSpore orders them by name, as
  // nlohmann's map iterates, whatever blob_fields says.
  bool has_int_blob = false;
  for (const auto& [name, field] : schemas[0]["schema"].items()) {
    if (!field.is_object() || !field.contains("type") || !field["type"].is_string())
      fail(what, ": schema field '", name, "' has no type");
    const std::string type = field["type"];
    const bool blob = (field.size() == 2 && field.contains("shape")) || type == "bytes";
    if (!blob) continue;
    h.blob_columns.push_back({name, type});
    has_int_blob = has_int_blob || type == "int32" || type == "int64";
  }
  // Integer columns are compressed from version 3.0 on (ShardColumn's has_compress_blob_).
  h.compressed = has_int_blob && version == "3.0";
  return h;
}

// Decodes one row blob into the int32 columns `wanted` (input_ids, labels).
void decode_blob(const unsigned char* p, uint64_t n, const ShardHeader& h, const std::vector<std::string>& wanted,
                 std::vector<std::vector<int32_t>>& out, const std::string& what) {
  for (auto& v : out) v.clear();
  uint64_t pos = 0;
  const bool single = h.blob_columns.size() == 1;
  for (const Column& column : h.blob_columns) {
    uint64_t len = n;
    if (!single) {
      if (pos + 8 > n) fail(what, ": blob ends before column '", column.name, "'");
      len = mr::read_be64(p + pos);
      pos += 8;
      if (len > n - pos) fail(what, ": column '", column.name, "' of ", len, " bytes overflows its blob");
    }
    auto it = std::find(wanted.begin(), wanted.end(), column.name);
    if (it != wanted.end()) {
      auto& values = out[static_cast<size_t>(it - wanted.begin())];
      const std::string where = what + ": column '" + column.name + "'";
      if (column.type != "int32" && column.type != "int64") fail(where, ": type ", column.type, ", expected int32 or int64");
      if (h.compressed) {
        mr::read_compressed_ints(p + pos, len, values, where);
      } else {
        const uint64_t width = column.type == "int32" ? 4 : 8;
        if (len % width) fail(where, ": ", len, " bytes is not a whole number of ", column.type);
        for (uint64_t i = 0; i < len; i += width) {
          int64_t v = 0;
          if (width == 4) {
            int32_t x;
            std::memcpy(&x, p + pos + i, 4);
            v = x;
          } else {
            std::memcpy(&v, p + pos + i, 8);
          }
          if (v < INT32_MIN || v > INT32_MAX) fail(where, ": value ", v, " outside int32");
          values.push_back(static_cast<int32_t>(v));
        }
      }
    }
    pos += len;
  }
  if (pos != n) fail(what, ": the columns take ", pos, " bytes of a ", n, "-byte blob");
}

void read_shard(const std::string& path, const json& expect_schema, const json& expect_addresses, size_t shard_id,
                TokenRows& rows) {
  const auto file = MappedFile::open(path);
  const ShardHeader h = read_header(*file);
  if (h.header["schema"] != expect_schema || h.header["shard_addresses"] != expect_addresses)
    fail(path, ": schema or shard list differs from the first shard's");
  if (h.header["shard_id"] != shard_id) fail(path, ": shard_id ", h.header["shard_id"].dump(), ", expected ", shard_id);
  const std::vector<std::string> wanted = {"input_ids", "labels"};
  for (const std::string& name : wanted)
    if (std::none_of(h.blob_columns.begin(), h.blob_columns.end(), [&](const Column& c) { return c.name == name; }))
      fail(path, ": the MindRecord schema has no array field '", name, "'");

  const auto index = mr::read_index(path + ".db", fs::path(path).filename().string());
  const json& pages = h.header["page"];
  const auto* bytes = reinterpret_cast<const unsigned char*>(file->data());
  std::vector<std::vector<int32_t>> columns(wanted.size());
  for (size_t i = 0; i < index.size(); ++i) {
    const mr::IndexRow& r = index[i];
    const std::string what = cat(path, ": row ", r.row_id);
    if (r.row_id != static_cast<int64_t>(i)) fail(what, ": the index's row ids are not 0, 1, 2, ... (found ", r.row_id, " at ", i, ")");
    // The reader looks pages up by position: the list is in page_id order.
    if (r.page_id_blob < 0 || static_cast<size_t>(r.page_id_blob) >= pages.size())
      fail(what, ": blob page ", r.page_id_blob, " is not in the header's ", pages.size(), " pages");
    const json& page = pages[static_cast<size_t>(r.page_id_blob)];
    if (page.value("page_id", int64_t{-1}) != r.page_id_blob || page.value("page_type", "") != "BLOB_DATA" ||
        page.value("page_type_id", int64_t{-1}) != r.row_group_id)
      fail(what, ": page ", r.page_id_blob, " is not the BLOB_DATA page of row group ", r.row_group_id);
    const auto used = page.value("page_size", uint64_t{0});
    // The offsets, header_size and page_size are the files' numbers: every sum is checked, so none
    // wraps around to a position inside the file (seen while writing fuzz/fuzz_mindrecord.cpp).
    if (r.page_offset_blob < 0 || r.page_offset_blob_end < 8 || r.page_offset_blob > r.page_offset_blob_end - 8 ||
        static_cast<uint64_t>(r.page_offset_blob_end) > used)
      fail(what, ": blob record [", r.page_offset_blob, ", ", r.page_offset_blob_end, ") is outside the ", used,
           " bytes of page ", r.page_id_blob);
    uint64_t start = 0, end = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(r.page_id_blob), h.page_size, &start) ||
        __builtin_add_overflow(start, h.header_size, &start) ||
        __builtin_add_overflow(start, static_cast<uint64_t>(r.page_offset_blob), &start) ||
        __builtin_add_overflow(start, static_cast<uint64_t>(r.page_offset_blob_end - r.page_offset_blob), &end) ||
        end > file->size())
      fail(what, ": blob record at offset ", r.page_offset_blob, " of page ", r.page_id_blob, " (header_size ",
           h.header_size, ", page_size ", h.page_size, ") lies past the end of the file (", file->size(), " bytes)");
    const uint64_t len = mr::read_le64(bytes + start);
    if (len != end - start - 8) fail(what, ": blob length ", len, " disagrees with the index (", end - start - 8, ")");
    decode_blob(bytes + start + 8, len, h, wanted, columns, what);
    if (rows.row_length == 0) rows.row_length = static_cast<int64_t>(columns[0].size());
    for (size_t c = 0; c < wanted.size(); ++c)
      if (static_cast<int64_t>(columns[c].size()) != rows.row_length || rows.row_length == 0)
        fail(what, ": '", wanted[c], "' has ", columns[c].size(), " values, the first row has ", rows.row_length);
    rows.input_ids.insert(rows.input_ids.end(), columns[0].begin(), columns[0].end());
    rows.labels.insert(rows.labels.end(), columns[1].begin(), columns[1].end());
  }
}

}  // namespace

bool is_mindrecord_file(const std::string& path) {
  char start[8 + 15] = {};
  std::ifstream in(path, std::ios::binary);
  return in.read(start, sizeof start) && std::memcmp(start + 8, "{\"header_size\":", 15) == 0;
}

TokenRows read_mindrecord_dataset(const std::string& path) {
  const auto first = MappedFile::open(path);
  const ShardHeader h = read_header(*first);
  const json& addresses = h.header["shard_addresses"];
  const fs::path dir = fs::path(path).parent_path();
  TokenRows rows;
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (!addresses[i].is_string()) fail(path, ": shard_addresses holds a non-string");
    // Shard files are named without their folder and found beside the opened file.
    const std::string shard = (dir / addresses[i].get<std::string>()).string();
    if (!file_exists(shard)) fail(path, ": shard ", i, " '", shard, "' is missing");
    read_shard(shard, h.header["schema"], addresses, i, rows);
  }
  if (rows.input_ids.empty()) fail(path, ": no rows");
  return rows;
}

}  // namespace baichuan::train
