// The `baichuan` command line: the output contracts other tools rely on, and a one-line error with
// exit code 1 (never a crash) for every kind of bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/mapped_file.h"
#include "golden.h"
#include "shared_data.h"

namespace baichuan {
namespace cli_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using nlohmann::json;
using testing::shared_path;

using testing::baichuan_cli;
using testing::CliRun;
using testing::quote;

fs::path temp_copy_of(const std::string& folder, const std::string& name) {
  fs::path dst = testing::temp_path("cli", name);
  fs::remove_all(dst);
  fs::copy(folder, dst, fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(dst)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(dst, fs::perms::owner_all, fs::perm_options::add);
  return dst;
}

void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(testing::golden_json_path(model_));
    golden_ = testing::read_golden(model_);
  }
  // A failing run: exit code 1, one line on stderr containing `words`.
  void expect_error(const std::string& args, const std::string& words) {
    CliRun r = baichuan_cli(args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(words), std::string::npos) << "stderr of `" << args << "` lacks '" << words << "':\n" << r.err;
    EXPECT_EQ(r.err.find("error:"), r.err.rfind("error:")) << r.err;
  }
  std::string model_;
  json golden_;
};

TEST_F(Cli, TokenizeJsonGivesTheGoldenIds) {
  const auto& p = golden_["prompts"][2];
  CliRun r = baichuan_cli("tokenize -m " + model_ + " -p " + quote(p["text"]) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["ids"], p["ids"]);
}

TEST_F(Cli, TokenizeChatJsonGivesTheGoldenIds) {
  const auto& c = golden_["chats"][1];
  fs::path messages = testing::temp_path("cli", "messages.json");
  write_file(messages, c["messages"].dump());
  CliRun r = baichuan_cli("tokenize -m " + model_ + " --chat " + messages.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["ids"], c["ids"]);
}

TEST_F(Cli, GenerateJsonGivesTheGoldenGreedyTokens) {
  const auto& p = golden_["prompts"][0];
  CliRun r = baichuan_cli("generate -m " + model_ + " -p " + quote(p["text"]) + " -n 24 --greedy --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["prompt_ids"], p["ids"]);
  EXPECT_EQ(out["tokens"], p["greedy"]);
  EXPECT_TRUE(out["text"].is_string());
}

TEST_F(Cli, LogitsWritesTheLastPositionAsFloat32) {
  const auto& p = golden_["prompts"][1];
  fs::path out = testing::temp_path("cli", "logits.f32");
  CliRun r = baichuan_cli("logits -m " + model_ + " --kv-type f32 -p " + quote(p["text"]) + " -o " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string ours = read_text_file(out.string());
  std::string golden = read_text_file(model_ + "/" + p["last_logits_file"].get<std::string>());
  ASSERT_EQ(ours.size(), golden.size());
  const float* a = reinterpret_cast<const float*>(ours.data());
  const float* b = reinterpret_cast<const float*>(golden.data());
  float err = 0, ref = 0;
  for (size_t i = 0; i < golden.size() / 4; ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  EXPECT_LE(err / ref, 1e-5f);
}

TEST_F(Cli, SeededSamplingIsRepeatable) {
  std::string args = "generate -m " + model_ + " -p hello -n 12 --ignore-eos --seed 5 --json";
  CliRun a = baichuan_cli(args), b = baichuan_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["tokens"], json::parse(b.out)["tokens"]);
}

TEST_F(Cli, MissingAndUnreadableInputs) {
  expect_error("generate -m /nonexistent/model -p hi", "/nonexistent/model");
  expect_error("generate -m " + model_ + " --chat /nonexistent.json", "/nonexistent.json");
  fs::path empty = testing::temp_path("cli", "empty_dir");
  fs::create_directories(empty);
  expect_error("generate -m " + empty.string() + " -p hi", "config.json");
}

TEST_F(Cli, CorruptedConfigAndMessages) {
  fs::path dir = temp_copy_of(model_, "bad_config");
  write_file(dir / "config.json", "{ not json");
  expect_error("tokenize -m " + dir.string() + " -p hi", "config.json: invalid JSON");
  write_file(dir / "config.json", R"({"vocab_size": 125696, "hidden_size": 32})");
  expect_error("tokenize -m " + dir.string() + " -p hi", "missing field 'intermediate_size'");
  // A config that disagrees with the weights: the tensor and both shapes are named.
  auto cfg = json::parse(read_text_file(model_ + "/config.json"));
  cfg["intermediate_size"] = 90;
  write_file(dir / "config.json", cfg.dump());
  expect_error("tokenize -m " + dir.string() + " -p hi", "has shape [88, 32], expected [90, 32]");

  fs::path messages = testing::temp_path("cli", "bad_messages.json");
  write_file(messages, R"([{"role": "robot", "content": "hi"}])");
  expect_error("generate -m " + model_ + " --chat " + messages.string(), "robot");
  write_file(messages, "[{");
  expect_error("generate -m " + model_ + " --chat " + messages.string(), messages.string());
}

TEST_F(Cli, TruncatedWeightFilesInEveryFormat) {
  fs::path dir = temp_copy_of(model_, "truncated");
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") / 2);
  expect_error("tokenize -m " + dir.string() + " -p hi", "model.safetensors");

  std::string bin_dir = shared_path("reference/b2-13b-tiny");
  fs::path bins = temp_copy_of(bin_dir, "truncated_bin");
  fs::resize_file(bins / "pytorch_model-00002-of-00002.bin", 5000000);
  expect_error("tokenize -m " + bins.string() + " -p hi", "pytorch_model-00002-of-00002.bin");

  fs::path ms = temp_copy_of(shared_path("reference/b2-7b-tiny-mindspore"), "truncated_ms");
  fs::resize_file(ms / "baichuan2_7b_tiny.ckpt", 1000000);
  expect_error("tokenize -m " + (ms / "baichuan2_7b_tiny.ckpt").string() + " -p hi", "baichuan2_7b_tiny.ckpt");

  fs::path gguf = testing::temp_path("cli", "trunc.gguf");
  ASSERT_EQ(baichuan_cli("convert -m " + model_ + " -o " + gguf.string() + " --type f16").exit_code, 0);
  fs::resize_file(gguf, fs::file_size(gguf) - 100);
  expect_error("tokenize -m " + gguf.string() + " -p hi", "trunc.gguf");
}

TEST_F(Cli, PromptLongerThanTheContext) {
  expect_error("generate -m " + model_ + " -p " + quote("one two three four five six") + " --ctx 3 -n 1",
               "more than the context");
}

// serve warns when it listens beyond this machine without a key. 192.0.2.1 (TEST-NET-1) is never a
// local address, so serve stops at the bind, after the warning, with no port opened.
TEST_F(Cli, ServeWarnsWhenExposedWithoutAKey) {
  const std::string serve = "serve -m " + model_ + " -t 1 --port 0 --host 192.0.2.1";
  CliRun r = baichuan_cli(serve);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("warning: --host 192.0.2.1 without --api-key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cannot listen on 192.0.2.1"), std::string::npos) << r.err;
  r = baichuan_cli(serve + " --api-key k");
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

TEST_F(Cli, BadFlagValues) {
  expect_error("generate -m " + model_ + " -p hi --temp -0.5", "--temp");  // 0 is greedy (CliArguments)
  expect_error("generate -m " + model_ + " -p hi --top-p 2", "top_p");
  expect_error("generate -m " + model_ + " -p hi --position sideways", "--position");
}

// --kv-type: a Q8_0 cache on a model whose heads are whole blocks stays close to float32; a head
// size that is not, or an unknown type, is refused before the model loads.
TEST_F(Cli, KvCacheTypes) {
  fs::path dir = testing::temp_path("cli", "kv_types");
  fs::create_directories(dir);
  json config = json::parse(read_text_file(model_ + "/config.json"));
  config["hidden_size"] = 64;
  config["num_attention_heads"] = 2;  // head size 32
  std::ofstream(dir / "config.json") << config.dump();
  std::string model = (dir / "m.gguf").string();
  ASSERT_EQ(baichuan_cli("init --config " + (dir / "config.json").string() + " --type f32 -o " + model).exit_code, 0);
  std::vector<std::vector<float>> logits;
  for (const char* type : {"f32", "f16", "q8_0"}) {
    std::string out = (dir / (std::string(type) + ".f32")).string();
    CliRun r = baichuan_cli("logits -m " + model + " --kv-type " + type + " -p 'The quick brown fox jumps' -o " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find(std::string(type == std::string("f32") ? "F32" : type == std::string("f16") ? "F16" : "Q8_0") +
                         " KV cache"),
              std::string::npos)
        << r.err;
    std::string bytes = read_text_file(out);
    logits.emplace_back(bytes.size() / 4);
    std::memcpy(logits.back().data(), bytes.data(), bytes.size());
  }
  for (size_t t = 1; t < logits.size(); ++t) {
    const double error = testing::max_relative_error(logits[t], logits[0]);
    EXPECT_LE(error, t == 1 ? 1e-3 : 2e-2) << (t == 1 ? "f16" : "q8_0");
    EXPECT_GT(error, 0.0) << "the cache type made no difference: was it applied?";
  }
  CliRun r = baichuan_cli("generate -m " + model_ + " --kv-type q8_0 -p hi -n 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("head size"), std::string::npos) << r.err;
  r = baichuan_cli("generate -m " + model_ + " --kv-type q4 -p hi -n 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown KV cache type 'q4'"), std::string::npos) << r.err;
}

TEST_F(Cli, InitWritesAWorkingRandomModel) {
  fs::path out = testing::temp_path("cli", "random.gguf");
  CliRun r = baichuan_cli("init --config " + model_ + "/config.json --type bf16 -o " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CliRun g = baichuan_cli("generate -m " + out.string() + " -p hello -n 4 --greedy --ignore-eos --json");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(json::parse(g.out)["tokens"].size(), 4u);
}

}  // namespace
}  // namespace baichuan
