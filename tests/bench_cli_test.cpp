// `baichuan bench`: the llama-bench style table and JSON on a tiny random model, and a one-line error
// with a non-zero exit code for bad arguments.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_runner.h"
#include "core/mapped_file.h"

namespace baichuan {
namespace bench_cli_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using nlohmann::json;

using testing::baichuan_cli;
using testing::CliRun;

// The Markdown table rows whose `test` column (the 6th) is `name`, split into trimmed cells.
std::vector<std::vector<std::string>> table_rows(const std::string& out, const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '|') continue;
    std::vector<std::string> cells;
    std::istringstream parts(line.substr(1));
    std::string cell;
    while (std::getline(parts, cell, '|')) {
      auto b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
    }
    if (cells.size() == 7 && cells[5] == name) rows.push_back(cells);
  }
  return rows;
}

class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = testing::temp_path("bench", "tiny.gguf");
    CliRun r = baichuan_cli("init --preset tiny --type f16 -o " + model_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { fs::remove(model_); }

  void expect_error(const std::string& args, const std::string& words) {
    CliRun r = baichuan_cli(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_LT(r.exit_code, 128) << args << ": crashed\n" << r.err;
    EXPECT_NE(r.err.find(words), std::string::npos) << "stderr of `" << args << "` lacks '" << words << "':\n" << r.err;
  }

  static std::string model_;
};

std::string BenchCli::model_;

TEST_F(BenchCli, PrintsALlamaBenchTable) {
  CliRun r = baichuan_cli("bench -m " + model_ + " -p 8 -n 4 -r 2 -t 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| model"), std::string::npos) << r.out;
  for (const char* column : {"size", "params", "backend", "threads", "test", "t/s"})
    EXPECT_NE(r.out.find(column), std::string::npos) << column << "\n" << r.out;
  for (const char* test : {"pp8", "tg4"}) {
    auto rows = table_rows(r.out, test);
    ASSERT_EQ(rows.size(), 1u) << test << "\n" << r.out;
    EXPECT_EQ(rows[0][0], "baichuan ?B F16");
    EXPECT_NE(rows[0][3].find("CPU"), std::string::npos);
    EXPECT_EQ(rows[0][4], "1");
    double mean = std::stod(rows[0][6]);  // "123.45 ± 6.78"
    EXPECT_GT(mean, 0) << rows[0][6];
    EXPECT_NE(rows[0][6].find("±"), std::string::npos);
  }
  EXPECT_NE(r.out.find("peak RSS:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CPU:"), std::string::npos) << r.out;
}

TEST_F(BenchCli, JsonHasLlamaBenchFields) {
  CliRun r = baichuan_cli("bench -m " + model_ + " -p 4,8 -n 2 -r 2 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 3u) << r.out;
  EXPECT_EQ(rows[0]["n_prompt"], 4);
  EXPECT_EQ(rows[1]["n_prompt"], 8);
  EXPECT_EQ(rows[2]["n_gen"], 2);
  EXPECT_EQ(rows[2]["n_prompt"], 0);
  for (const auto& row : rows) {
    for (const char* field : {"model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt",
                              "n_gen", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts",
                              "test_time", "backends", "peak_rss_bytes", "cpu_features"})
      EXPECT_TRUE(row.contains(field)) << field;
    EXPECT_EQ(row["model_filename"], model_);
    EXPECT_EQ(row["n_threads"], 1);
    EXPECT_GT(row["model_size"].get<uint64_t>(), 0u);
    EXPECT_GT(row["model_n_params"].get<uint64_t>(), 0u);
    EXPECT_GT(row["avg_ts"].get<double>(), 0);
    EXPECT_GE(row["stddev_ts"].get<double>(), 0);
    EXPECT_EQ(row["samples_ts"].size(), 2u);
    EXPECT_EQ(row["samples_ns"].size(), 2u);
    EXPECT_GT(row["peak_rss_bytes"].get<uint64_t>(), 0u);
  }
}

TEST_F(BenchCli, StreamsDecodeTogetherAndCountEveryStreamsTokens) {
  CliRun r = baichuan_cli("bench -m " + model_ + " -p 0 -n 3 -s 1,3 -r 1 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_EQ(rows[0]["n_streams"], 1);
  EXPECT_EQ(rows[1]["n_streams"], 3);
  // t/s = streams x n_gen / time.
  for (const auto& row : rows) {
    double expected = 1e9 * 3 * row["n_streams"].get<double>() / row["samples_ns"][0].get<double>();
    EXPECT_NEAR(row["samples_ts"][0].get<double>(), expected, expected * 1e-9);
  }
  CliRun table = baichuan_cli("bench -m " + model_ + " -p 0 -n 3 -s 2 -r 1 -t 1");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("tg3 x2"), std::string::npos) << table.out;
}

// -d D: each test after D tokens already in the cache, labelled as llama-bench labels it.
TEST_F(BenchCli, DepthTimesTestsAfterTokensAlreadyInTheCache) {
  CliRun r = baichuan_cli("bench -m " + model_ + " -p 8 -n 2 -d 0,70 -r 2 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 4u) << r.out;
  const std::pair<int, int> expected[] = {{8, 0}, {8, 70}, {0, 0}, {0, 70}};  // (n_prompt, n_depth)
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rows[i]["n_prompt"], expected[i].first) << i;
    EXPECT_EQ(rows[i]["n_depth"], expected[i].second) << i;
    EXPECT_EQ(rows[i]["samples_ns"].size(), 2u) << i;
  }
  CliRun table = baichuan_cli("bench -m " + model_ + " -p 8 -n 2 -d 70 -r 1 -t 1");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table_rows(table.out, "pp8 @ d70").size(), 1u) << table.out;
  EXPECT_EQ(table_rows(table.out, "tg2 @ d70").size(), 1u) << table.out;
}

// A mixed file reads as llama-bench names it (llama_model_ftype_name), not by its commonest type.
TEST_F(BenchCli, MixedFileIsLabelledAsLlamaBenchDoes) {
  const std::string mixed = testing::temp_path("bench", "q4km.gguf");
  CliRun init = baichuan_cli("init --preset tiny --type q4_k_m -o " + mixed);
  ASSERT_EQ(init.exit_code, 0) << init.err;
  CliRun r = baichuan_cli("bench -m " + mixed + " -p 4 -n 0 -r 1 -t 1");
  fs::remove(mixed);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = table_rows(r.out, "pp4");
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0][0], "baichuan ?B Q4_K - Medium");
}

TEST_F(BenchCli, BadArguments) {
  expect_error("bench -m /nonexistent/model.gguf -p 8 -n 4", "/nonexistent/model.gguf");
  expect_error("bench -m " + model_ + " -p 8 -n 4 -r 0", "-r");
  expect_error("bench -m " + model_ + " -p -3 -n 4", "-p");
  expect_error("bench -m " + model_ + " -p 8 -n -1", "-n");
  expect_error("bench -m " + model_ + " -p 0 -n 0", "nothing to measure");
  expect_error("bench -m " + model_ + " -p 8 -t 0", "-t");
  expect_error("bench -m " + model_ + " -n 8 -s 0", "--streams");
  expect_error("bench -m " + model_ + " -p 8 -d -1", "-d");
  expect_error("bench -m " + model_ + " -p abc", "abc");
  expect_error("bench -p 8", "model");
}

}  // namespace
}  // namespace baichuan
