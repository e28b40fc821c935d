// MindRecord files written by train::MindRecordWriter, read back by a reader written here from the
// layout facts of ../shared/specs/finetune-formats.md alone (not from the writer's code): the header
// and its key order, blob pages and the integer compression, raw pages with the dummy {"id": 0}
// records, and the SQLite index that MindSpore reads rows through.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "cli_runner.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "preprocess_fixtures.h"
#include "train/dataset_reader.h"
#include "train/mindrecord_reader.h"
#include "train/mindrecord_writer.h"

namespace baichuan {
namespace mindrecord_format_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;
using nlohmann::ordered_json;
using testing::ScratchDir;
namespace fs = std::filesystem;

// ---- The reader from the spec -------------------------------------------------------------------

[[noreturn]] void spec_violation(const std::string& what) { throw std::runtime_error(what); }
void require(bool ok, const std::string& what) {
  if (!ok) spec_violation(what);
}

uint64_t le64(const std::string& b, uint64_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b.at(at + static_cast<uint64_t>(i)));
  return v;
}
uint64_t be_n(const std::string& b, uint64_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(b.at(at + static_cast<uint64_t>(i)));
  return v;
}

// One compressed int column of `len` bytes at `at`: 4-byte BE count, 2-bit width codes (element i at
// byte i/4, shift 2*(3 - i%4)), values little-endian and signed in 1/2/4/8 bytes.
std::vector<int32_t> decompress_column(const std::string& b, uint64_t at, uint64_t len) {
  const uint64_t count = be_n(b, at, 4);
  const uint64_t bitmap = (count + 3) / 4;
  uint64_t pos = at + 4 + bitmap;
  std::vector<int32_t> out;
  for (uint64_t i = 0; i < count; ++i) {
    const int code = (static_cast<unsigned char>(b.at(at + 4 + i / 4)) >> (2 * (3 - i % 4))) & 3;
    const int width = 1 << code;
    int64_t v = 0;
    switch (width) {
      case 1: v = static_cast<int8_t>(b.at(pos)); break;
      case 2: { int16_t x; std::memcpy(&x, b.data() + pos, 2); v = x; break; }
      case 4: { int32_t x; std::memcpy(&x, b.data() + pos, 4); v = x; break; }
      default: std::memcpy(&v, b.data() + pos, 8);
    }
    // The writer must use the narrowest width that holds the value.
    const int narrowest = v >= -128 && v <= 127 ? 1 : v >= -32768 && v <= 32767 ? 2 : v >= INT32_MIN && v <= INT32_MAX ? 4 : 8;
    require(width == narrowest, "value " + std::to_string(v) + " stored in " + std::to_string(width) + " bytes");
    out.push_back(static_cast<int32_t>(v));
    pos += static_cast<uint64_t>(width);
  }
  require(pos == at + len, "compressed column length " + std::to_string(len) + " but contents take " +
                               std::to_string(pos - at));
  return out;
}

struct SpecRow {
  std::vector<int32_t> input_ids, labels;
};

struct SpecShard {
  ordered_json header;
  std::vector<SpecRow> rows;          // by ROW_ID
  int64_t uncompressed_minus_stored = 0;  // what compression_size should add up to
};

struct Sqlite {
  sqlite3* db = nullptr;
  ~Sqlite() { sqlite3_close(db); }
  // All rows of a query, every column as text.
  std::vector<std::vector<std::string>> query(const std::string& sql) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* st = nullptr;
    require(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, "sqlite: " + sql + ": " + sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* t = sqlite3_column_text(st, c);
        row.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      rows.push_back(row);
    }
    sqlite3_finalize(st);
    return rows;
  }
};

SpecShard read_by_spec(const std::string& path) {
  const std::string b = read_text_file(path);
  SpecShard shard;
  const uint64_t n = le64(b, 0);
  shard.header = ordered_json::parse(b.substr(8, n));
  const auto& h = shard.header;
  // Top-level keys in ShardHeader::SerializeHeader's order.
  std::vector<std::string> keys;
  for (const auto& item : h.items()) keys.push_back(item.key());
  require(keys == std::vector<std::string>{"header_size", "index_fields", "page", "page_size", "compression_size", "schema",
                                           "shard_addresses", "shard_id", "statistics", "version"},
          "header keys out of order: " + h.dump());
  require(h["version"] == "3.0" && h["index_fields"].is_null() && h["statistics"].is_null(), "version/index/statistics");
  const uint64_t header_size = h["header_size"], page_size = h["page_size"];
  require(header_size >= (1 << 14) && header_size <= (1 << 27) && header_size % 4 == 0, "header_size limits");
  require(page_size >= (1 << 15) && page_size <= (1 << 28) && page_size % 4 == 0, "page_size limits");
  require(8 + n <= header_size, "header overflows header_size");
  for (uint64_t i = 8 + n; i < header_size; ++i) require(b[i] == 0, "header area not zero-filled");
  require(json::parse(h["schema"].dump()) ==
              json::parse(R"([{"blob_fields":["input_ids","labels"],"desc":"belle_baichuan2","schema":{"input_ids":)"
                          R"({"shape":[-1],"type":"int32"},"labels":{"shape":[-1],"type":"int32"}}}])"),
          "schema: " + h["schema"].dump());
  // Nested objects are nlohmann dumps: sorted keys.
  for (const auto& page : h["page"]) {
    std::vector<std::string> page_keys;
    for (const auto& item : page.items()) page_keys.push_back(item.key());
    require(std::is_sorted(page_keys.begin(), page_keys.end()), "page keys not sorted: " + page.dump());
  }

  // Pages in page_id order; blob pages with continuous row ranges and the [{"id":0,"offset":0}] group list.
  const auto& pages = h["page"];
  int64_t next_row = 0, blob_type_id = 0, raw_type_id = 0;
  for (size_t i = 0; i < pages.size(); ++i) {
    const auto& p = pages[i];
    require(p["page_id"] == i && p["shard_id"] == h["shard_id"], "page " + std::to_string(i) + ": " + p.dump());
    require(p["page_size"].get<uint64_t>() <= page_size, "page used beyond page_size");
    if (p["page_type"] == "BLOB_DATA") {
      require(p["page_type_id"] == blob_type_id++, "blob page_type_id not 0, 1, ...");
      require(p["start_row_id"] == next_row && p["end_row_id"] > next_row, "blob row range: " + p.dump());
      require(p["row_group_ids"] == ordered_json::parse(R"([{"id":0,"offset":0}])"), "blob row_group_ids");
      next_row = p["end_row_id"];
    } else {
      require(p["page_type"] == "RAW_DATA", "page_type " + p["page_type"].dump());
      require(p["page_type_id"] == raw_type_id++ && p["start_row_id"] == 0 && p["end_row_id"] == 0, "raw page " + p.dump());
    }
  }

  // The index.
  Sqlite db;
  require(sqlite3_open_v2((path + ".db").c_str(), &db.db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK, "cannot open .db");
  auto tables = db.query("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name;");
  require(tables.size() == 2 && tables[0][0] == "INDEXES" && tables[1][0] == "SHARD_NAME", "tables of the .db");
  for (const char* column : {"ROW_ID", "PAGE_ID_RAW", "PAGE_OFFSET_RAW", "PAGE_OFFSET_RAW_END", "ROW_GROUP_ID",
                             "PAGE_ID_BLOB", "PAGE_OFFSET_BLOB", "PAGE_OFFSET_BLOB_END", "PRIMARY KEY(ROW_ID)"})
    require(tables[0][1].find(column) != std::string::npos, std::string("INDEXES lacks ") + column);
  auto name = db.query("SELECT NAME FROM SHARD_NAME;");
  require(name.size() == 1 && name[0][0] == fs::path(path).filename().string(), "SHARD_NAME is not the file's name");
  auto index = db.query(
      "SELECT ROW_ID, PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID, PAGE_ID_BLOB, PAGE_OFFSET_BLOB,"
      " PAGE_OFFSET_BLOB_END FROM INDEXES ORDER BY ROW_ID;");
  require(static_cast<int64_t>(index.size()) == next_row, "index rows != rows of the blob pages");

  std::map<int64_t, uint64_t> blob_cursor;             // blob page -> where its next record must start
  std::map<std::pair<int64_t, int64_t>, uint64_t> group_first_raw;  // (raw page, group) -> first record offset
  std::map<int64_t, uint64_t> raw_cursor;
  for (size_t r = 0; r < index.size(); ++r) {
    std::vector<int64_t> v;
    for (const auto& s : index[r]) v.push_back(std::stoll(s));
    const int64_t row_id = v[0], raw_page = v[1], raw_off = v[2], raw_end = v[3], group = v[4], blob_page = v[5],
                  blob_off = v[6], blob_end = v[7];
    const std::string what = path + " row " + std::to_string(row_id) + ": ";
    require(row_id == static_cast<int64_t>(r), what + "ROW_IDs not 0, 1, ...");
    // Blob: found through ROW_GROUP_ID = the blob page's page_type_id; offsets include the 8-byte prefix.
    const auto& bp = pages.at(static_cast<size_t>(blob_page));
    require(bp["page_type"] == "BLOB_DATA" && bp["page_type_id"] == group, what + "not the group's blob page");
    require(bp["start_row_id"] <= row_id && row_id < bp["end_row_id"], what + "outside the page's row range");
    require(static_cast<uint64_t>(blob_off) == blob_cursor[blob_page], what + "blob records not back to back");
    blob_cursor[blob_page] = static_cast<uint64_t>(blob_end);
    if (row_id + 1 == bp["end_row_id"]) require(bp["page_size"] == blob_end, what + "page_size is not the bytes used");
    const uint64_t at = header_size + static_cast<uint64_t>(blob_page) * page_size + static_cast<uint64_t>(blob_off);
    const uint64_t len = le64(b, at);
    require(len + 8 == static_cast<uint64_t>(blob_end - blob_off), what + "blob length vs index");
    // Two blob fields: [8-byte BE length][compressed column] each, input_ids then labels.
    uint64_t pos = at + 8;
    SpecRow row;
    for (auto* column : {&row.input_ids, &row.labels}) {
      const uint64_t col_len = be_n(b, pos, 8);
      *column = decompress_column(b, pos + 8, col_len);
      pos += 8 + col_len;
    }
    require(pos == at + 8 + len, what + "columns do not fill the blob");
    require(row.input_ids.size() == row.labels.size(), what + "input_ids and labels lengths differ");
    shard.uncompressed_minus_stored += static_cast<int64_t>(2 * (8 + 4 * row.input_ids.size()) - len);
    shard.rows.push_back(std::move(row));

    // Raw: the 13-byte dummy {"id": 0} record, groups' records back to back on their raw page.
    const auto& rp = pages.at(static_cast<size_t>(raw_page));
    require(rp["page_type"] == "RAW_DATA", what + "PAGE_ID_RAW is not a raw page");
    require(raw_end - raw_off == 13 && static_cast<uint64_t>(raw_end) <= rp["page_size"].get<uint64_t>(), what + "raw range");
    require(static_cast<uint64_t>(raw_off) == raw_cursor[raw_page], what + "raw records not back to back");
    raw_cursor[raw_page] = static_cast<uint64_t>(raw_end);
    const uint64_t raw_at = header_size + static_cast<uint64_t>(raw_page) * page_size + static_cast<uint64_t>(raw_off);
    require(b.substr(raw_at, 13) == std::string("\x05\0\0\0\0\0\0\0\x81\xa2\x69\x64\x00", 13), what + "raw record bytes");
    group_first_raw.try_emplace({raw_page, group}, static_cast<uint64_t>(raw_off));
  }
  // Each raw page's row_group_ids point at its groups' first raw records.
  for (const auto& p : pages) {
    if (p["page_type"] != "RAW_DATA") continue;
    const int64_t id = p["page_id"];
    ordered_json expect = ordered_json::array();
    for (const auto& [key, offset] : group_first_raw)
      if (key.first == id) expect.push_back({{"id", key.second}, {"offset", offset}});
    require(p["row_group_ids"] == expect, "raw page " + std::to_string(id) + " row_group_ids " +
                                              p["row_group_ids"].dump() + ", expected " + expect.dump());
    require(p["page_size"] == raw_cursor[id], "raw page_size is not the bytes used");
  }
  return shard;
}

// ---- Tests --------------------------------------------------------------------------------------

// Rows whose values need every width: small ids, -100, vocabulary ids beyond int16, int32 extremes.
SpecRow make_row(std::mt19937& rng, int64_t n) {
  SpecRow r;
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_int_distribution<int32_t> vocab(0, 125695);
  for (int64_t i = 0; i < n; ++i) {
    const int k = kind(rng);
    r.input_ids.push_back(k < 6 ? vocab(rng) : k < 8 ? 0 : k == 8 ? INT32_MAX : INT32_MIN);
    r.labels.push_back(k < 5 ? -100 : k < 8 ? vocab(rng) : k == 8 ? 2 : -129);
  }
  return r;
}

std::vector<SpecRow> write_rows(const std::string& path, int64_t count, int64_t row_length, train::MindRecordOptions o,
                                unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::vector<SpecRow> rows;
  train::MindRecordWriter w(path, row_length, o);
  for (int64_t i = 0; i < count; ++i) {
    rows.push_back(make_row(rng, row_length));
    w.add(rows.back().input_ids, rows.back().labels);
  }
  w.commit();
  return rows;
}

void expect_rows(const std::vector<SpecRow>& got, const std::vector<SpecRow>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].input_ids, want[i].input_ids) << what << " row " << i;
    ASSERT_EQ(got[i].labels, want[i].labels) << what << " row " << i;
  }
}

TEST(MindRecordFile, CompressedColumnBytesAreExactlyAsSpecified) {
  ScratchDir dir;
  const std::vector<int32_t> ids = {0, -1, 127, 128, -129, 32767, 32768, INT32_MIN};
  const std::vector<int32_t> labels = {-100, 2, -100, 2, -100, 2, -100, 2};
  train::MindRecordOptions o;
  o.header_size = 1 << 14;
  o.page_size = 1 << 15;
  {
    train::MindRecordWriter w(dir / "one.mindrecord", 8, o);
    w.add(ids, labels);
    w.commit();
  }
  const std::string b = read_text_file(dir / "one.mindrecord");
  const uint64_t at = o.header_size;  // page 0 = the blob page
  // input_ids: count 8; codes 0 0 0 1 | 1 1 2 2 -> 0b00000001, 0b01011010; then the values.
  const std::string ids_col = std::string("\0\0\0\x08", 4) + "\x01\x5a" + std::string("\x00\xff\x7f", 3) +
                              std::string("\x80\x00\x7f\xff\xff\x7f\x00\x80\x00\x00\x00\x00\x00\x80", 14);
  // labels: all int8: -100 = 0x9c.
  const std::string labels_col = std::string("\0\0\0\x08", 4) + std::string("\0\0", 2) + "\x9c\x02\x9c\x02\x9c\x02\x9c\x02";
  auto be8 = [](uint64_t v) {
    std::string s;
    for (int i = 7; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
    return s;
  };
  const std::string blob = be8(ids_col.size()) + ids_col + be8(labels_col.size()) + labels_col;
  std::string le_len(8, '\0');
  for (int i = 0; i < 8; ++i) le_len[static_cast<size_t>(i)] = static_cast<char>((blob.size() >> (8 * i)) & 0xFF);
  EXPECT_EQ(b.substr(at, 8 + blob.size()), le_len + blob);
  // compression_size: the Python blob is [8][8 x int32] per field = 80 bytes.
  const SpecShard s = read_by_spec(dir / "one.mindrecord");
  EXPECT_EQ(s.header["compression_size"], 80 - static_cast<int64_t>(blob.size()));
  EXPECT_EQ(s.rows[0].input_ids, ids);
  EXPECT_EQ(s.rows[0].labels, labels);
}

TEST(MindRecordFile, HeaderTextIsMindSporesForOneBlobAndOneRawPage) {
  ScratchDir dir;
  write_rows(dir / "belle512.mindrecord", 3, 5, {});
  const std::string b = read_text_file(dir / "belle512.mindrecord");
  const std::string header = b.substr(8, le64(b, 0));
  const SpecShard s = read_by_spec(dir / "belle512.mindrecord");
  const auto& pages = s.header["page"];
  const std::string expect =
      R"({"header_size":1048576,"index_fields":null,"page":[{"end_row_id":3,"page_id":0,"page_size":)" +
      pages[0]["page_size"].dump() +
      R"(,"page_type":"BLOB_DATA","page_type_id":0,"row_group_ids":[{"id":0,"offset":0}],"shard_id":0,"start_row_id":0},)"
      R"({"end_row_id":0,"page_id":1,"page_size":39,"page_type":"RAW_DATA","page_type_id":0,"row_group_ids":[{"id":0,"offset":0}],)"
      R"("shard_id":0,"start_row_id":0}],"page_size":16777216,"compression_size":)" +
      std::to_string(s.uncompressed_minus_stored) +
      R"(,"schema":[{"blob_fields":["input_ids","labels"],"desc":"belle_baichuan2","schema":{"input_ids":{"shape":[-1],)"
      R"("type":"int32"},"labels":{"shape":[-1],"type":"int32"}}}],"shard_addresses":["belle512.mindrecord"],"shard_id":0,)"
      R"("statistics":null,"version":"3.0"})";
  EXPECT_EQ(header, expect);
}

TEST(MindRecordFile, ManyBlobAndRawPagesReadBackThroughTheIndex) {
  ScratchDir dir;
  train::MindRecordOptions o;
  o.header_size = 1 << 14;
  o.page_size = 1 << 15;  // MindSpore's smallest: ~90 rows per blob page, several groups per raw page
  const auto rows = write_rows(dir / "many.mindrecord", 3000, 64, o);
  const SpecShard s = read_by_spec(dir / "many.mindrecord");
  expect_rows(s.rows, rows, "spec reader");
  int blob = 0, raw = 0;
  for (const auto& p : s.header["page"]) (p["page_type"] == "BLOB_DATA" ? blob : raw)++;
  EXPECT_GT(blob, 20);
  EXPECT_GT(raw, 1);
  EXPECT_EQ(s.header["compression_size"], s.uncompressed_minus_stored);
  // Our own reader agrees.
  const auto ours = train::read_mindrecord_dataset(dir / "many.mindrecord");
  ASSERT_EQ(ours.size(), 3000);
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_TRUE(std::equal(rows[i].input_ids.begin(), rows[i].input_ids.end(), ours.input_ids.begin() + static_cast<long>(i * 64)));
    ASSERT_TRUE(std::equal(rows[i].labels.begin(), rows[i].labels.end(), ours.labels.begin() + static_cast<long>(i * 64)));
  }
}

TEST(MindRecordFile, ShardsGetRowsInTurnAndNameEachOther) {
  ScratchDir dir;
  const auto rows = write_rows(dir / "s.mindrecord", 10, 7, {.shards = 3});
  EXPECT_EQ(dir.files(), (std::set<std::string>{"s.mindrecord0", "s.mindrecord0.db", "s.mindrecord1", "s.mindrecord1.db",
                                                "s.mindrecord2", "s.mindrecord2.db"}));
  int64_t saved = 0;
  std::vector<int64_t> compression;
  for (int k = 0; k < 3; ++k) {
    const SpecShard s = read_by_spec(dir / ("s.mindrecord" + std::to_string(k)));
    EXPECT_EQ(s.header["shard_id"], k);
    EXPECT_EQ(s.header["shard_addresses"], ordered_json({"s.mindrecord0", "s.mindrecord1", "s.mindrecord2"}));
    std::vector<SpecRow> want;
    for (size_t i = static_cast<size_t>(k); i < rows.size(); i += 3) want.push_back(rows[i]);
    expect_rows(s.rows, want, "shard " + std::to_string(k));
    saved += s.uncompressed_minus_stored;
    compression.push_back(s.header["compression_size"]);
  }
  // One compression_size for the whole set, in every header.
  EXPECT_EQ(compression, std::vector<int64_t>(3, saved));
  // Opening any shard reads them all, shard by shard.
  const auto ours = train::read_mindrecord_dataset(dir / "s.mindrecord2");
  ASSERT_EQ(ours.size(), 10);
  EXPECT_TRUE(std::equal(rows[3].input_ids.begin(), rows[3].input_ids.end(), ours.input_ids.begin() + 7));
  // TokenDataset opens the set from the prefix given to the writer too.
  const auto d = train::TokenDataset::open(dir / "s.mindrecord");
  EXPECT_EQ(d.path(), dir / "s.mindrecord0");
  ASSERT_EQ(d.size(), 10);
  EXPECT_EQ(std::vector<int32_t>(d.labels(1).begin(), d.labels(1).end()), rows[3].labels);
  // FileWriter's suffixes are zero-padded to the digits of K - 1.
  ScratchDir wide;
  write_rows(wide / "w.mindrecord", 11, 2, {.shards = 11});
  EXPECT_TRUE(wide.files().count("w.mindrecord00") && wide.files().count("w.mindrecord10.db"));
}

TEST(MindRecordFile, UncommittedWriterLeavesNothing) {
  ScratchDir dir;
  {
    train::MindRecordWriter w(dir / "gone.mindrecord", 4, {.shards = 2});
    const std::vector<int32_t> row = {1, 2, 3, 4};
    w.add(row, row);
  }
  EXPECT_TRUE(dir.files().empty());
  // More shards than rows is refused, and leaves nothing either.
  {
    train::MindRecordWriter w(dir / "few.mindrecord", 4, {.shards = 3});
    const std::vector<int32_t> row = {1, 2, 3, 4};
    w.add(row, row);
    EXPECT_THROW(w.commit(), Error);
  }
  EXPECT_TRUE(dir.files().empty());
}

// The contract command on the official sample: the spec reader finds the golden rows at 513 tokens.
TEST(MindRecordFile, PreprocessOfTheGoldenSampleReadsBackBySpec) {
  const std::string name = "belle_chat_format_oasst_zh_multiturn";
  REQUIRE_SHARED(testing::golden_preprocess_path(name));
  REQUIRE_SHARED(testing::tokenizer_path());
  ScratchDir dir;
  const auto r = testing::baichuan_cli("preprocess --input " + testing::belle_path(name + ".json") + " --tokenizer " +
                                       testing::tokenizer_path() + " --seq-length 512 --format mindrecord -o " +
                                       dir / "belle512.mindrecord");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(dir.files(), (std::set<std::string>{"belle512.mindrecord", "belle512.mindrecord.db"}));
  const SpecShard s = read_by_spec(dir / "belle512.mindrecord");
  const json golden = json::parse(read_text_file(testing::golden_preprocess_path(name)));
  ASSERT_EQ(s.rows.size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) {
    const auto& row = s.rows[i];
    ASSERT_EQ(row.input_ids.size(), 513u);
    EXPECT_EQ(json(std::vector<int32_t>(row.input_ids.begin(), row.input_ids.begin() + 512)), golden[i]["input_ids"]) << i;
    EXPECT_EQ(json(std::vector<int32_t>(row.labels.begin(), row.labels.begin() + 512)), golden[i]["labels"]) << i;
    if (golden[i]["input_ids"][511] == 0) {  // padded at 512: the 513th value is padding too
      EXPECT_EQ(row.input_ids[512], 0) << i;
      EXPECT_EQ(row.labels[512], -100) << i;
    }
  }
  EXPECT_EQ(s.header["compression_size"], s.uncompressed_minus_stored);
}

// The message of the Error that reading `path` throws ("" if it reads).
std::string read_error(const std::string& path) {
  return baichuan::testing::error_message_of([&] { train::read_mindrecord_dataset(path); }, "");
}

void run_sql(const std::string& db_path, const char* sql) {
  Sqlite db;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db.db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db.db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db.db);
}

TEST(MindRecordReader, RefusesRenamedMissingIndexAndDamagedRecords) {
  ScratchDir dir;
  write_rows(dir / "a.mindrecord", 5, 6, {});
  fs::copy(dir / "a.mindrecord.db", dir / "pristine.db");
  // Renamed: the header still lists a.mindrecord as the shard.
  fs::rename(dir / "a.mindrecord", dir / "c.mindrecord");
  fs::rename(dir / "a.mindrecord.db", dir / "c.mindrecord.db");
  EXPECT_NE(read_error(dir / "c.mindrecord").find("a.mindrecord' is missing"), std::string::npos) << read_error(dir / "c.mindrecord");
  // Back under its name, without its index.
  fs::rename(dir / "c.mindrecord", dir / "a.mindrecord");
  EXPECT_NE(read_error(dir / "a.mindrecord").find("a.mindrecord.db: missing"), std::string::npos) << read_error(dir / "a.mindrecord");
  // With another file's index (SHARD_NAME differs), as MindSpore checks.
  fs::copy(dir / "pristine.db", dir / "a.mindrecord.db");
  run_sql(dir / "a.mindrecord.db", "UPDATE SHARD_NAME SET NAME = 'other.mindrecord';");
  EXPECT_NE(read_error(dir / "a.mindrecord").find("SHARD_NAME is 'other.mindrecord'"), std::string::npos) << read_error(dir / "a.mindrecord");
  // With an index whose record end is off by one.
  fs::remove(dir / "a.mindrecord.db");
  fs::copy(dir / "pristine.db", dir / "a.mindrecord.db");
  run_sql(dir / "a.mindrecord.db", "UPDATE INDEXES SET PAGE_OFFSET_BLOB_END = PAGE_OFFSET_BLOB_END + 1 WHERE ROW_ID = 2;");
  EXPECT_NE(read_error(dir / "a.mindrecord").find("row 2"), std::string::npos) << read_error(dir / "a.mindrecord");
  // Intact again: it reads.
  fs::remove(dir / "a.mindrecord.db");
  fs::copy(dir / "pristine.db", dir / "a.mindrecord.db");
  EXPECT_EQ(read_error(dir / "a.mindrecord"), "");
  // A damaged compressed column (its element count) is caught, not read past.
  {
    std::string b = read_text_file(dir / "a.mindrecord");
    b[(1 << 20) + 8 + 8 + 3] = 100;  // row 0's input_ids count: 6 -> 100
    testing::write_text(dir / "a.mindrecord", b);
  }
  EXPECT_NE(read_error(dir / "a.mindrecord").find("row 0"), std::string::npos) << read_error(dir / "a.mindrecord");
}

// Numbers that wrap around uint64/int64 when the reader adds them up must be refused, not read before
// the file's first byte (seen while writing fuzz/fuzz_mindrecord.cpp, which reproduced it: header_size
// 2^64 - 4 read 4 bytes before the map).
TEST(MindRecordReader, RefusesHeaderSizesAndOffsetsThatOverflow) {
  ScratchDir dir;
  write_rows(dir / "a.mindrecord", 5, 6, {});
  const std::string pristine = read_text_file(dir / "a.mindrecord");
  fs::copy(dir / "a.mindrecord.db", dir / "pristine.db");
  // The header rewritten in place with another header_size (pages stay where they are).
  auto with_header_size = [&](uint64_t header_size) {
    uint64_t n = 0;
    std::memcpy(&n, pristine.data(), 8);
    auto header = nlohmann::json::parse(pristine.substr(8, n));
    header["header_size"] = header_size;
    const std::string text = header.dump();
    const uint64_t m = text.size();
    std::string b = pristine;
    b.replace(0, 8, reinterpret_cast<const char*>(&m), 8);
    b.replace(8, m, text);
    testing::write_text(dir / "a.mindrecord", b);
  };
  with_header_size(~uint64_t{0} - 3);
  EXPECT_NE(read_error(dir / "a.mindrecord").find("past the end of the file"), std::string::npos) << read_error(dir / "a.mindrecord");
  with_header_size(~uint64_t{0} - (uint64_t{1} << 20));
  EXPECT_NE(read_error(dir / "a.mindrecord").find("past the end of the file"), std::string::npos) << read_error(dir / "a.mindrecord");
  testing::write_text(dir / "a.mindrecord", pristine);
  EXPECT_EQ(read_error(dir / "a.mindrecord"), "");
  // A blob offset near INT64_MAX (offset + 8 overflowed int64).
  run_sql(dir / "a.mindrecord.db", "UPDATE INDEXES SET PAGE_OFFSET_BLOB = 9223372036854775800 WHERE ROW_ID = 0;");
  EXPECT_NE(read_error(dir / "a.mindrecord").find("row 0"), std::string::npos) << read_error(dir / "a.mindrecord");
}

}  // namespace
}  // namespace baichuan
