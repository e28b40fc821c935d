// `baichuan preprocess` against the official fine-tune preprocessing: the golden rows of
// ../shared/reference/train/preprocess_<file>_512.json, computed by the official code from
// ../shared/data/belle/<file>.json with the real tokenizer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/mapped_file.h"
#include "preprocess_fixtures.h"
#include "train/dataset_reader.h"

namespace baichuan {
namespace preprocess_golden_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;
using testing::baichuan_cli;
using testing::CliRun;
using testing::ScratchDir;

const char* const kGoldenFiles[] = {"belle_chat_format_school_math", "belle_chat_format_oasst_zh_multiturn"};

std::string preprocess_args(const std::string& input, const std::string& format, const std::string& out) {
  return "preprocess --input " + input + " --tokenizer " + testing::tokenizer_path() + " --seq-length 512 --format " +
         format + " -o " + out;
}

// The first record whose rows differ, for a readable failure.
std::string first_difference(const json& ours, const json& golden) {
  if (ours.size() != golden.size()) return "record count " + std::to_string(ours.size()) + " vs " + std::to_string(golden.size());
  for (size_t i = 0; i < golden.size(); ++i)
    for (const char* key : {"id", "input_ids", "labels"})
      if (ours[i][key] != golden[i][key]) return "record " + std::to_string(i) + " " + key + ":\n ours   " +
                                                  ours[i][key].dump() + "\n golden " + golden[i][key].dump();
  return "same values, different text";
}

TEST(PreprocessGolden, JsonOutputIsTheGoldenFileByteForByte) {
  for (const char* name : kGoldenFiles) {
    const std::string golden_path = testing::golden_preprocess_path(name);
    REQUIRE_SHARED(golden_path);
    REQUIRE_SHARED(testing::tokenizer_path());
    ScratchDir dir;
    const CliRun r = baichuan_cli(preprocess_args(testing::belle_path(std::string(name) + ".json"), "json", dir / "out.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string ours = read_text_file(dir / "out.json"), golden = read_text_file(golden_path);
    EXPECT_TRUE(ours == golden) << name << ": " << first_difference(json::parse(ours), json::parse(golden));
    EXPECT_EQ(dir.files(), std::set<std::string>{"out.json"});
  }
}

// The originals the BELLE-layout samples were made from (Alpaca layout; history -> earlier turns)
// give the same rows.
TEST(PreprocessGolden, AlpacaOriginalsGiveTheGoldenRows) {
  const std::pair<const char*, const char*> pairs[] = {
      {"belle_school_math_dev1K_original.jsonl", "belle_chat_format_school_math"},
      {"oaast_sft_zh_original.json", "belle_chat_format_oasst_zh_multiturn"}};
  for (const auto& [original, name] : pairs) {
    REQUIRE_SHARED(testing::golden_preprocess_path(name));
    REQUIRE_SHARED(testing::belle_path(original));
    REQUIRE_SHARED(testing::tokenizer_path());
    ScratchDir dir;
    const CliRun r = baichuan_cli(preprocess_args(testing::belle_path(original), "json", dir / "out.json") + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["layout"], "alpaca");
    const json ours = json::parse(read_text_file(dir / "out.json"));
    const json golden = json::parse(read_text_file(testing::golden_preprocess_path(name)));
    ASSERT_EQ(ours.size(), golden.size()) << original;
    for (size_t i = 0; i < golden.size(); ++i) {
      ASSERT_EQ(ours[i]["input_ids"], golden[i]["input_ids"]) << original << " record " << i;
      ASSERT_EQ(ours[i]["labels"], golden[i]["labels"]) << original << " record " << i;
    }
  }
}

// Every output format, read back by the trainer's TokenDataset, holds the golden rows; MindRecord
// rows are seq_length + 1 = 513 long (MindFormers), their first 512 values the golden row.
TEST(PreprocessGolden, EveryFormatReadsBackAsTheGoldenRows) {
  const char* name = kGoldenFiles[1];  // the multi-turn file has truncated records
  const std::string golden_path = testing::golden_preprocess_path(name);
  REQUIRE_SHARED(golden_path);
  REQUIRE_SHARED(testing::tokenizer_path());
  const json golden = json::parse(read_text_file(golden_path));
  ScratchDir dir;
  const std::string input = testing::belle_path(std::string(name) + ".json");
  for (const auto& [format, out] : {std::pair{"tokens", "out.tokens"}, {"json", "out.json"}, {"mindrecord", "out.mindrecord"}}) {
    const CliRun r = baichuan_cli(preprocess_args(input, format, dir / out));
    ASSERT_EQ(r.exit_code, 0) << format << ": " << r.err;
    const auto d = train::TokenDataset::open(dir / out);
    EXPECT_STREQ(train::dataset_format_name(d.format()), format);
    ASSERT_EQ(d.size(), static_cast<int64_t>(golden.size())) << format;
    ASSERT_EQ(d.row_length(), std::string(format) == "mindrecord" ? 513 : 512) << format;
    for (int64_t i = 0; i < d.size(); ++i) {
      auto ids = d.input_ids(i).first(512);
      auto labels = d.labels(i).first(512);
      ASSERT_EQ(json(std::vector<int32_t>(ids.begin(), ids.end())), golden[static_cast<size_t>(i)]["input_ids"]) << format << " " << i;
      ASSERT_EQ(json(std::vector<int32_t>(labels.begin(), labels.end())), golden[static_cast<size_t>(i)]["labels"]) << format << " " << i;
    }
  }
  EXPECT_EQ(dir.files(), (std::set<std::string>{"out.tokens", "out.json", "out.mindrecord", "out.mindrecord.db"}));
}

}  // namespace
}  // namespace baichuan
