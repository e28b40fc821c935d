// train::TokenDataset, the reader the trainer uses, over the three formats preprocess writes; the
// token file's checks; the JSON list reader's errors; AtomicFile's skip_to / write_at that the
// writers rely on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "preprocess_fixtures.h"
#include "train/dataset_file.h"
#include "train/dataset_json.h"
#include "train/dataset_reader.h"
#include "train/mindrecord_writer.h"

namespace baichuan {
namespace preprocess_dataset_test {  // named, not anonymous: the tests compile as a unity build

using testing::ScratchDir;
using testing::write_text;
using train::DatasetFormat;
using train::TokenDataset;
namespace fs = std::filesystem;

struct Row {
  std::vector<int32_t> input_ids, labels;
};

// Rows shaped like preprocess output: a prompt (labels -100), an answer (labels = ids), padding.
std::vector<Row> sample_rows(int count, int64_t length, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> vocab(3, 125695);
  std::vector<Row> rows;
  for (int r = 0; r < count; ++r) {
    Row row;
    const auto used = std::uniform_int_distribution<int64_t>(2, length)(rng);
    const auto prompt = used / 3;
    for (int64_t i = 0; i < length; ++i) {
      const int32_t id = i < used ? vocab(rng) : 0;
      row.input_ids.push_back(id);
      row.labels.push_back(i < used && i >= prompt ? id : -100);
    }
    rows.push_back(row);
  }
  return rows;
}

void expect_dataset(const TokenDataset& d, const std::vector<Row>& rows, int64_t length) {
  ASSERT_EQ(d.size(), static_cast<int64_t>(rows.size()));
  ASSERT_EQ(d.row_length(), length);
  for (size_t i = 0; i < rows.size(); ++i) {
    auto ids = d.input_ids(static_cast<int64_t>(i));
    auto labels = d.labels(static_cast<int64_t>(i));
    ASSERT_EQ(std::vector<int32_t>(ids.begin(), ids.end()), rows[i].input_ids) << d.path() << " record " << i;
    ASSERT_EQ(std::vector<int32_t>(labels.begin(), labels.end()), rows[i].labels) << d.path() << " record " << i;
  }
  EXPECT_THROW(d.input_ids(d.size()), Error);
  EXPECT_THROW(d.labels(-1), Error);
}

TEST(TokenDataset, OpensAllThreeFormatsByContent) {
  ScratchDir dir;
  const int64_t length = 33;
  const auto rows = sample_rows(40, length, 3);
  {
    train::TokenFileWriter tokens(dir / "d.tokens", length);
    train::JsonDatasetWriter json(dir / "d.json");
    train::MindRecordWriter mindrecord(dir / "d.mindrecord", length);
    for (size_t i = 0; i < rows.size(); ++i) {
      tokens.add(rows[i].input_ids, rows[i].labels, false);
      json.add("r" + std::to_string(i), rows[i].input_ids, rows[i].labels);
      mindrecord.add(rows[i].input_ids, rows[i].labels);
    }
    tokens.commit();
    json.commit();
    mindrecord.commit();
  }
  // The names say nothing: formats are told by content.
  fs::rename(dir / "d.tokens", dir / "a.bin");
  fs::rename(dir / "d.json", dir / "b.bin");
  const auto a = TokenDataset::open(dir / "a.bin");
  const auto b = TokenDataset::open(dir / "b.bin");
  const auto c = TokenDataset::open(dir / "d.mindrecord");
  EXPECT_EQ(a.format(), DatasetFormat::Tokens);
  EXPECT_EQ(b.format(), DatasetFormat::Json);
  EXPECT_EQ(c.format(), DatasetFormat::MindRecord);
  for (const auto* d : {&a, &b, &c}) expect_dataset(*d, rows, length);
  // A copy stays valid after the original is gone (the mapping and rows are shared).
  std::optional<TokenDataset> original = TokenDataset::open(dir / "a.bin");
  const TokenDataset copy = *original;
  original.reset();
  expect_dataset(copy, rows, length);
}

TEST(TokenDataset, TokenFileHeaderCountsAndLayout) {
  ScratchDir dir;
  const int64_t length = 8;
  const auto rows = sample_rows(5, length, 9);
  {
    train::TokenFileWriter w(dir / "t.tokens", length);
    for (const auto& r : rows) w.add(r.input_ids, r.labels, &r == &rows[1]);
    w.commit();
  }
  const std::string b = read_text_file(dir / "t.tokens");
  ASSERT_EQ(b.size(), 64 + 5 * length * 8);
  train::TokenFileHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  EXPECT_EQ(std::string(h.magic, 8), "BCTOKENS");
  EXPECT_EQ(h.version, 1u);
  EXPECT_EQ(h.row_length, 8u);
  EXPECT_EQ(h.record_count, 5u);
  EXPECT_EQ(h.truncated_count, 1u);
  EXPECT_EQ(h.pad_id, 0);
  EXPECT_EQ(h.ignore_index, -100);
  EXPECT_EQ(h.data_offset, 64u);
  uint64_t tokens = 0, labels = 0;
  for (const auto& r : rows) {
    for (int32_t id : r.input_ids) tokens += id != 0;
    for (size_t t = 1; t < r.labels.size(); ++t) labels += r.labels[t] != -100;
  }
  EXPECT_EQ(h.token_count, tokens);
  EXPECT_EQ(h.label_count, labels);
  // Record 3's labels, read straight from the documented offset.
  std::vector<int32_t> labels3(length);
  std::memcpy(labels3.data(), b.data() + 64 + (3 * 2 + 1) * length * 4, length * 4);
  EXPECT_EQ(labels3, rows[3].labels);
}

TEST(TokenDataset, DamagedTokenFilesAreRefused) {
  ScratchDir dir;
  const auto rows = sample_rows(3, 4, 1);
  {
    train::TokenFileWriter w(dir / "t.tokens", 4);
    for (const auto& r : rows) w.add(r.input_ids, r.labels, false);
    w.commit();
  }
  const std::string good = read_text_file(dir / "t.tokens");
  auto error_of = [&](const std::string& bytes) -> std::string {
    write_text(dir / "x.tokens", bytes);
    return baichuan::testing::error_message_of([&] { TokenDataset::open(dir / "x.tokens"); }, "");
  };
  EXPECT_EQ(error_of(good), "");
  EXPECT_NE(error_of(good.substr(0, good.size() - 4)).find("truncated or damaged"), std::string::npos);
  EXPECT_NE(error_of(good + "xxxx").find("truncated or damaged"), std::string::npos);
  std::string v2 = good;
  v2[8] = 2;
  EXPECT_NE(error_of(v2).find("version 2"), std::string::npos);
  std::string huge = good;
  huge[16] = '\xff';  // record_count: an overflow must not pass the size check
  huge[23] = '\x7f';
  EXPECT_NE(error_of(huge).find("truncated or damaged"), std::string::npos);
  EXPECT_NE(error_of(good.substr(0, 40)).find("token file"), std::string::npos) << error_of(good.substr(0, 40));
  // No records at all.
  {
    train::TokenFileWriter w(dir / "empty.tokens", 4);
    w.commit();
  }
  EXPECT_THROW(TokenDataset::open(dir / "empty.tokens"), Error);
  EXPECT_THROW(TokenDataset::open(dir / "missing.tokens"), Error);
}

TEST(TokenDataset, JsonListErrorsNameRecordAndField) {
  ScratchDir dir;
  auto error_of = [&](const std::string& text) -> std::string {
    write_text(dir / "x.json", text);
    return baichuan::testing::error_message_of([&] { TokenDataset::open(dir / "x.json"); }, "");
  };
  EXPECT_EQ(error_of(R"([{"id": "a", "input_ids": [1, 2], "labels": [-100, 2], "more": {"input_ids": "x"}}])"), "");
  EXPECT_NE(error_of(R"([{"input_ids": [1, 2], "labels": [-100, 2]}, {"input_ids": [1], "labels": [2]}])")
                .find("record 2: field 'input_ids' has 1 values, the first record has 2"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": [1, 2]}])").find("record 1: field 'labels' is missing"), std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": [1, 2.5], "labels": [1, 2]}])").find("record 1: field 'input_ids' holds the number 2.5"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": [1, 3000000000], "labels": [1, 2]}])").find("outside int32"), std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": 5, "labels": [1]}])").find("field 'input_ids' is a number, expected an array"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": [1], "labels": [1]}, 7])").find("record 2: expected an object"), std::string::npos);
  EXPECT_NE(error_of(R"({"input_ids": [1]})").find("expected a JSON list of records"), std::string::npos);
  EXPECT_NE(error_of(R"([{"input_ids": [1], "labels": [1]}, {"input_ids": [1], "lab)").find("invalid JSON in record 2"),
            std::string::npos);
  EXPECT_NE(error_of("[]").find("no records"), std::string::npos);
}

// The expected text is Python 3's json.dumps of the same string.
TEST(JsonDatasetWriter, QuotesStringsAsPythonJsonDumps) {
  EXPECT_EQ(train::python_json_string(std::string("a\x7f" "b\0\x1f\u2028😀\"\\/\b\f\n\r\t", 20)),
            R"("a\u007fb\u0000\u001f\u2028\ud83d\ude00\"\\/\b\f\n\r\t")");
  EXPECT_EQ(train::python_json_string("belle_school_math_dev1K_0"), "\"belle_school_math_dev1K_0\"");
  EXPECT_EQ(train::python_json_string("中文"), R"("\u4e2d\u6587")");
  ScratchDir dir;
  {
    train::JsonDatasetWriter w(dir / "l.json");
    w.add("x", std::vector<int32_t>{195, -100}, std::vector<int32_t>{2, -100});
    w.add("y", std::vector<int32_t>{1}, std::vector<int32_t>{-100});
    w.commit();
  }
  EXPECT_EQ(read_text_file(dir / "l.json"),
            R"([{"id": "x", "input_ids": [195, -100], "labels": [2, -100]}, {"id": "y", "input_ids": [1], "labels": [-100]}])");
}

TEST(AtomicFile, SkipLeavesZerosAndWriteAtFillsInAHeader) {
  ScratchDir dir;
  {
    AtomicFile f(dir / "f.bin");
    f.skip_to(8);
    f.write("data");
    f.skip_to(20);  // a skip at the very end still makes the file that long
    EXPECT_THROW(f.skip_to(10), Error);
    EXPECT_THROW(f.write_at(18, "xyz", 3), Error);  // past what is written
    f.write_at(0, "HEAD", 4);
    f.write_at(16, "tail", 4);
    EXPECT_TRUE(dir.files() == std::set<std::string>{"f.bin.tmp" + std::to_string(getpid())});
    f.commit();
  }
  EXPECT_EQ(read_text_file(dir / "f.bin"), std::string("HEAD\0\0\0\0data\0\0\0\0tail", 20));
  EXPECT_EQ(dir.files(), std::set<std::string>{"f.bin"});
}

}  // namespace
}  // namespace baichuan
