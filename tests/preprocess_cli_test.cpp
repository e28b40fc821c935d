// `baichuan preprocess` end to end: the contract commands, the summary, --skip-bad, -m, and bad
// input that must give one clear error (exit code 1) and leave no output file behind.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/mapped_file.h"
#include "preprocess_fixtures.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset_reader.h"

namespace baichuan {
namespace preprocess_cli_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;
using testing::baichuan_cli;
using testing::CliRun;
using testing::ScratchDir;
using testing::write_text;

class PreprocessCli : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_SHARED(testing::tokenizer_path()); }
  std::string args(const std::string& input, const std::string& rest) const {
    return "preprocess --input " + input + " --tokenizer " + testing::tokenizer_path() + " " + rest;
  }
  // A failing run: exit code 1, stderr naming every one of `words`, and no file but the input left.
  void expect_error(const ScratchDir& dir, const std::string& cli_args, std::initializer_list<std::string> words) {
    const auto before = dir.files();
    const CliRun r = baichuan_cli(cli_args);
    EXPECT_EQ(r.exit_code, 1) << cli_args << "\n" << r.err;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << "stderr lacks '" << w << "':\n" << r.err;
    EXPECT_EQ(r.err.find("error:"), r.err.rfind("error:")) << r.err;
    EXPECT_EQ(dir.files(), before) << "files left behind by: " << cli_args;
  }
  const std::string good_ = R"({"id": "g", "conversations": [{"from": "human", "value": "1+1=?"}, {"from": "gpt", "value": "2"}]})";
};

TEST_F(PreprocessCli, ContractCommandsWriteJsonAndMindRecordWithSummary) {
  ScratchDir dir;
  write_text(dir / "in.json", "[" + good_ + ", " + good_ + "]");
  CliRun r = baichuan_cli(args(dir / "in.json", "--seq-length 16 --format json -o " + dir / "out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(read_text_file(dir / "out.json"));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["id"], "g");
  EXPECT_EQ(out[0]["input_ids"].size(), 16u);
  EXPECT_NE(r.out.find("records    2 written, 0 bad"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("output     json, rows of 16: " + dir / "out.json"), std::string::npos) << r.out;

  r = baichuan_cli(args(dir / "in.json", "--seq-length 16 --format mindrecord -o " + dir / "out.mindrecord --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json summary = json::parse(r.out);
  EXPECT_EQ(summary["records"], 2);
  EXPECT_EQ(summary["row_length"], 17);
  EXPECT_EQ(summary["files"], json({dir / "out.mindrecord", dir / "out.mindrecord.db"}));
  EXPECT_EQ(summary["layout"], "belle");
  // 195 q.. 196 a.. 2: labels trained on are the answer ids and the final EOS.
  const auto d = train::TokenDataset::open(dir / "out.mindrecord");
  int64_t label_tokens = 0, tokens = 0;
  for (int64_t i = 0; i < d.size(); ++i) {
    for (size_t t = 1; t < 17; ++t) label_tokens += d.labels(i)[t] != -100;
    for (int32_t id : d.input_ids(i)) tokens += id != 0;
  }
  EXPECT_EQ(summary["label_tokens"], label_tokens);
  EXPECT_EQ(summary["tokens"], tokens);
  EXPECT_EQ(dir.files(), (std::set<std::string>{"in.json", "out.json", "out.mindrecord", "out.mindrecord.db"}));

  // Shards: OUT0, OUT1 with their indexes.
  r = baichuan_cli(args(dir / "in.json", "--seq-length 16 --format mindrecord --shards 2 -o " + dir / "sh.mindrecord"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(train::TokenDataset::open(dir / "sh.mindrecord1").size(), 2);
}

TEST_F(PreprocessCli, TruncationAndTokenCountsInTheSummary) {
  ScratchDir dir;
  const std::string long_record =
      R"({"id": "long", "conversations": [{"from": "human", "value": "请把这句话重复十遍，谢谢你的帮助。Please repeat this sentence ten times, thank you for your help."}, {"from": "gpt", "value": "好的，好的，好的"}]})";
  write_text(dir / "in.jsonl", long_record + "\n" + good_ + "\n");
  const CliRun r = baichuan_cli(args(dir / "in.jsonl", "--seq-length 16 --format json -o " + dir / "out.json --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["json_lines"], true);
  EXPECT_EQ(s["truncated"], 1);
  EXPECT_GT(s["dropped_tokens"].get<int64_t>(), 0);
  const json out = json::parse(read_text_file(dir / "out.json"));
  EXPECT_EQ(out[0]["input_ids"].size(), 16u);
  EXPECT_EQ(out[0]["input_ids"][0], 195);
  EXPECT_EQ(out[0]["labels"][15], -100);  // cut inside the human turn: no EOS at the end
  EXPECT_EQ(s["tokens"], 16 + out[1]["input_ids"].size() - std::count(out[1]["input_ids"].begin(), out[1]["input_ids"].end(), 0));
}

TEST_F(PreprocessCli, SkipBadCountsAndListsBadRecords) {
  ScratchDir dir;
  write_text(dir / "in.json", "[" + good_ + R"(, {"id": "b1", "conversations": [{"from": "human", "value": 5}]}, )" + good_ +
                                   R"(, {"id": "b2"}])");
  // Without --skip-bad: the first bad record stops the run.
  expect_error(dir, args(dir / "in.json", "--seq-length 8 --format json -o " + dir / "out.json"),
               {dir / "in.json", "record 2", "(id \"b1\")", "conversations[0].value", "expected a string"});
  const CliRun r = baichuan_cli(args(dir / "in.json", "--seq-length 8 --format json --skip-bad -o " + dir / "out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("records    2 written, 2 bad (skipped)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("record 2 (id \"b1\"): field 'conversations[0].value'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("record 4 (id \"b2\"): field 'conversations': missing"), std::string::npos) << r.out;
  EXPECT_EQ(json::parse(read_text_file(dir / "out.json")).size(), 2u);
  // All bad: nothing to write is an error, with the first reason.
  write_text(dir / "all_bad.json", R"([{"id": "b2"}])");
  expect_error(dir, args(dir / "all_bad.json", "--seq-length 8 --skip-bad -o " + dir / "x.tokens"),
               {"no records to write", "all 1 are bad"});
}

TEST_F(PreprocessCli, BadInputGivesOneClearErrorAndNoOutput) {
  ScratchDir dir;
  write_text(dir / "in.json", "[" + good_ + "]");
  const std::string out = " -o " + dir / "out.json";
  for (const char* format : {"json", "tokens", "mindrecord"}) {
    const std::string f = std::string(" --format ") + format;
    // Malformed record, wrong field type, truncated JSON.
    write_text(dir / "bad.json", "[" + good_ + R"(, {"id": "x", "conversations": [{"from": "human", "value": ["list"]}]}])");
    expect_error(dir, args(dir / "bad.json", "--seq-length 8" + f + out),
                 {"bad.json: record 2 (id \"x\"): field 'conversations[0].value': expected a string, got an array"});
    write_text(dir / "bad.json", "[" + good_ + R"(, {"id": "x", "conversations": "text"}])");
    expect_error(dir, args(dir / "bad.json", "--seq-length 8" + f + out), {"record 2", "field 'conversations'"});
    write_text(dir / "bad.json", "[" + good_ + ", " + good_.substr(0, 40));
    expect_error(dir, args(dir / "bad.json", "--seq-length 8" + f + out), {"bad.json: invalid JSON in record 2"});
    std::filesystem::remove(dir / "bad.json");
    // seq-length 0 and negative.
    expect_error(dir, args(dir / "in.json", "--seq-length 0" + f + out), {"--seq-length must be at least 1"});
    expect_error(dir, args(dir / "in.json", "--seq-length -3" + f + out), {"--seq-length must be at least 1"});
  }
  // Missing tokenizer, or none given; missing input; output folder that does not exist.
  expect_error(dir, "preprocess --input " + dir / "in.json" + " --tokenizer " + dir / "none.model --seq-length 8" + out,
               {"none.model"});
  expect_error(dir, "preprocess --input " + dir / "in.json" + " --seq-length 8" + out, {"--tokenizer", "-m"});
  expect_error(dir, args(dir / "nothere.json", "--seq-length 8" + out), {"nothere.json: cannot open"});
  expect_error(dir, args(dir / "in.json", "--seq-length 8 -o " + dir / "no/such/dir/out.json"), {"cannot create"});
  expect_error(dir, args(dir / "in.json", "--seq-length 8 --shards 2" + out), {"--shards is for --format mindrecord"});
  expect_error(dir, args(dir / "in.json", "--seq-length 8 --format json -o " + dir / "in.json"), {"is the input file"});
  expect_error(dir, args(dir / "in.json", "--seq-length 8 --format mindrecord --shards 3" + out), {"cannot fill 3 MindRecord shards"});
}

TEST_F(PreprocessCli, PackedTextRowsAreTheRecordsRunOnAcrossRows) {
  ScratchDir dir;
  const std::vector<std::string> texts = {"春曉\n孟浩然\n春眠不覺曉，處處聞啼鳥。", "Hello world, plain text.", "夜來風雨聲"};
  std::string jsonl;
  for (const auto& t : texts) jsonl += json{{"text", t}}.dump() + "\n";
  write_text(dir / "in.jsonl", jsonl);
  // The expected stream, from the tokenizer itself: each text's ids, then EOS.
  const Tokenizer tok = Tokenizer::from_file(testing::tokenizer_path());
  std::vector<int32_t> stream;
  for (const auto& t : texts) {
    const auto ids = tok.encode(t);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(2);
  }
  const int64_t row = 7, rows = (static_cast<int64_t>(stream.size()) + row - 1) / row;
  ASSERT_GT(stream.size() % row, 0u) << "the test wants a padded last row";
  const CliRun r = baichuan_cli(args(dir / "in.jsonl", "--layout text --pack --seq-length " + std::to_string(row) + " --format json --json -o " + dir / "out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["layout"], "text");
  EXPECT_EQ(s["records"], 3);
  EXPECT_EQ(s["rows"], rows);
  EXPECT_EQ(s["tokens"], static_cast<int64_t>(stream.size()));
  EXPECT_EQ(s["truncated"], 0);
  const json out = json::parse(read_text_file(dir / "out.json"));
  ASSERT_EQ(static_cast<int64_t>(out.size()), rows);
  std::vector<int32_t> input, labels;
  for (const auto& r : out) {
    ASSERT_EQ(r["input_ids"].size(), static_cast<size_t>(row));
    for (const auto& v : r["input_ids"]) input.push_back(v.get<int32_t>());
    for (const auto& v : r["labels"]) labels.push_back(v.get<int32_t>());
  }
  std::vector<int32_t> padded_input = stream, padded_labels = stream;
  padded_input.resize(static_cast<size_t>(rows * row), 0);
  padded_labels.resize(static_cast<size_t>(rows * row), -100);
  EXPECT_EQ(input, padded_input);
  EXPECT_EQ(labels, padded_labels);

  // Unpacked: one row per record, cut or padded.
  const CliRun one = baichuan_cli(args(dir / "in.jsonl", "--layout text --seq-length " + std::to_string(row) + " --format json --json -o " + dir / "one.json"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(json::parse(one.out)["rows"], 3);
  const json first = json::parse(read_text_file(dir / "one.json"))[0];
  EXPECT_EQ(first["input_ids"], json(std::vector<int32_t>(stream.begin(), stream.begin() + row)));

  // --pack on conversations is refused, whether the layout is given or read from the data.
  write_text(dir / "belle.json", "[" + good_ + "]");
  expect_error(dir, args(dir / "belle.json", "--pack --seq-length 8 -o " + dir / "x.tokens"),
               {"--pack is for plain-text records", "not belle conversations"});
  expect_error(dir, args(dir / "belle.json", "--layout alpaca --pack --seq-length 8 -o " + dir / "x.tokens"),
               {"--pack is for plain-text records", "not alpaca conversations"});
}

TEST_F(PreprocessCli, ModelFolderGivesItsTokenizer) {
  const std::string model = testing::shared_path("reference/b2-7b-tiny");
  REQUIRE_SHARED(model + "/tokenizer.model");
  ScratchDir dir;
  write_text(dir / "in.json", "[" + good_ + "]");
  CliRun a = baichuan_cli(args(dir / "in.json", "--seq-length 12 --format json -o " + dir / "a.json"));
  CliRun b = baichuan_cli("preprocess --input " + dir / "in.json" + " -m " + model + " --seq-length 12 --format json -o " +
                          dir / "b.json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(read_text_file(dir / "a.json"), read_text_file(dir / "b.json"));
}

}  // namespace
}  // namespace baichuan
