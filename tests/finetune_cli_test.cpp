// `baichuan finetune --data` end to end on b2-7b-tiny: overfitting 8 BELLE records, resume bit for bit
// (also across -t 1 / -t 2), SIGKILL inside a checkpoint write, an injected full disk, the memory plan
// refusal, bad input, and the exported Hugging Face folder read back; the same for --lora (the
// adapter folder and GGUF adapter read back by the adapter module).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "core/mapped_file.h"
#include "model/checkpoint.h"
#include "model/lora_adapter.h"
#include "preprocess_fixtures.h"
#include "train/train_model.h"

namespace baichuan {
namespace finetune_cli_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::baichuan_cli;
using testing::CliRun;
using testing::ScratchDir;

std::string tiny_model() { return testing::shared_path("reference/b2-7b-tiny"); }

// 8 BELLE records (school math) preprocessed at seq-length 64 into `dir`/b8.tokens.
std::string belle8(const ScratchDir& dir) {
  const std::string src = read_text_file(testing::belle_path("belle_chat_format_school_math.json"));
  const auto all = nlohmann::json::parse(src);
  nlohmann::json eight = nlohmann::json::array();
  for (size_t i = 0; i < 8; ++i) eight.push_back(all.at(i));
  testing::write_text(dir / "b8.json", eight.dump());
  const CliRun r = baichuan_cli("preprocess --input " + dir / "b8.json" + " --tokenizer " + testing::tokenizer_path() +
                                " --seq-length 64 -o " + dir / "b8.tokens");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir / "b8.tokens";
}

// The CSV log without the seconds column (the only one that may differ between runs).
std::string csv_without_seconds(const std::string& path) {
  std::istringstream in(read_text_file(path));
  std::string line, out;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream row(line);
    while (std::getline(row, cell, ',')) cells.push_back(cell);
    for (size_t i = 0; i < cells.size(); ++i)
      if (i != 5) out += cells[i] + ",";
    out += "\n";
  }
  return out;
}

class FinetuneCli : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(tiny_model());
    REQUIRE_SHARED(testing::tokenizer_path());
  }
  std::string train_args(const std::string& data, const std::string& out, const std::string& rest) const {
    return "finetune -m " + tiny_model() + " --data " + data + " -o " + out + " " + rest;
  }
};

TEST_F(FinetuneCli, TinyModelOverfitsEightBelleRecords) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 50 steps through the CLI (33 s in Release); the engine's overfit test runs under the sanitizers.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  ScratchDir dir;
  const std::string data = belle8(dir);
  const CliRun r = baichuan_cli(train_args(data, dir / "out", "--batch 8 --lr 6e-2 --schedule constant --clip 0 "
                                                               "--max-steps 50 -t 2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_LT(summary.at("loss").get<double>(), 0.1) << r.err;
  EXPECT_NE(r.err.find("memory plan"), std::string::npos);
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos);
  EXPECT_NE(r.err.find("ETA"), std::string::npos);
  // The exported folder is a model this project reads: the same weights, bit for bit, as the last
  // checkpoint (which holds the in-memory weights of the last step), and generate runs on it.
  const auto exported = train::load_train_model<float>(open_checkpoint(dir / "out/model"));
  const auto saved = train::load_train_model<float>(open_checkpoint(dir / "out/checkpoint-000050"));
  ASSERT_EQ(exported.params().size(), saved.params().size());
  EXPECT_EQ(0, std::memcmp(exported.params().data(), saved.params().data(), saved.params().size() * sizeof(float)));
  const CliRun gen = baichuan_cli("generate -m " + dir / "out/model" + " -p hello -n 4 --temperature 0");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
}

TEST_F(FinetuneCli, ResumeIsBitIdenticalAcrossThreadCounts) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 42 s under AddressSanitizer; the resume path runs there in KillInsideACheckpointWrite...
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  ScratchDir dir;
  const std::string data = belle8(dir);
  const std::string common = "--batch 2 --grad-accum 2 --lr 1e-2 --warmup 1 --schedule cosine --min-lr 1e-3 "
                             "--eval-split 0.25 --eval-every 2 --save-every 2 ";
  ASSERT_EQ(baichuan_cli(train_args(data, dir / "full", common + "--max-steps 4 -t 2")).exit_code, 0);
  ASSERT_EQ(baichuan_cli(train_args(data, dir / "part", common + "--max-steps 4 --stop-after 2 -t 1")).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "part/checkpoint-000004"));
  const CliRun resumed = baichuan_cli("finetune --resume " + dir / "part" + " -o " + dir / "part --max-steps 4 -t 2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(csv_without_seconds(dir / "full/train_log.csv"), csv_without_seconds(dir / "part/train_log.csv"));
  EXPECT_EQ(read_text_file(dir / "full/model/model.safetensors"), read_text_file(dir / "part/model/model.safetensors"));
  EXPECT_EQ(read_text_file(dir / "full/checkpoint-000004/optimizer.safetensors"),
            read_text_file(dir / "part/checkpoint-000004/optimizer.safetensors"));
}

// SIGKILL inside the write of checkpoint 4 (after its weights file `weights`), resume, and compare
// with an uninterrupted run (its final `result` file and the log).
void kill_inside_checkpoint_write_and_resume(const std::string& extra, const std::string& weights,
                                            const std::string& result) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  auto train_args = [&](const std::string& d, const std::string& out, const std::string& rest) {
    return "finetune -m " + tiny_model() + " --data " + d + " -o " + out + " " + rest;
  };
  const std::string common = "--batch 2 --lr 1e-2 --save-every 2 --max-steps 4 -t 1 " + extra;
  ASSERT_EQ(baichuan_cli(train_args(data, dir / "full", common)).exit_code, 0);
  // Start a run that pauses inside the write of checkpoint 4, then SIGKILL it there.
  const std::string err = dir / "err.txt";
  const std::string cmd = "BAICHUAN_CHECKPOINT_FAULT=pause:4 " + testing::cli_program() + " " +
                          train_args(data, dir / "killed", common) + " >/dev/null 2>" + err + " & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  long pid = 0;
  ASSERT_EQ(fscanf(p, "%ld", &pid), 1);
  pclose(p);
  // Whatever happens below, the paused run must not outlive the test.
  struct KillAtExit {
    long pid;
    ~KillAtExit() { kill(static_cast<pid_t>(pid), SIGKILL); }
  } kill_at_exit{pid};
  // The shell creates err.txt when it starts the run, which may be after popen returned.
  auto err_text = [&] { return fs::exists(err) ? read_text_file(err) : std::string(); };
  for (int i = 0; i < 600 && err_text().find("paused inside") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(err_text().find("paused inside"), std::string::npos) << err_text();
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  // Wait until it is gone (or a zombie: it is not our child, so we cannot reap it).
  const std::string stat = "/proc/" + std::to_string(pid) + "/stat";
  for (int i = 0; i < 100 && fs::exists(stat) && read_text_file(stat).find(") Z ") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(fs::exists(dir / "killed/checkpoint-000002/training_state.json"));
  EXPECT_TRUE(fs::exists(dir / ("killed/.checkpoint-000004.tmp/" + weights)));  // the half-written one
  EXPECT_FALSE(fs::exists(dir / "killed/checkpoint-000004"));
  const CliRun resumed = baichuan_cli("finetune --resume " + dir / "killed" + " -o " + dir / "killed -t 1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("at step 2"), std::string::npos) << resumed.err;
  EXPECT_FALSE(fs::exists(dir / "killed/.checkpoint-000004.tmp"));
  EXPECT_EQ(csv_without_seconds(dir / "full/train_log.csv"), csv_without_seconds(dir / "killed/train_log.csv"));
  EXPECT_EQ(read_text_file(dir / ("full/" + result)), read_text_file(dir / ("killed/" + result)));
}

TEST_F(FinetuneCli, KillInsideACheckpointWriteLeavesThePreviousOneResumable) {
  kill_inside_checkpoint_write_and_resume("", "model.safetensors", "model/model.safetensors");
}

TEST_F(FinetuneCli, LoraKillInsideACheckpointWriteLeavesThePreviousOneResumable) {
  kill_inside_checkpoint_write_and_resume("--lora r=2,targets=W_pack,down_proj", "adapter_model.safetensors",
                                          "adapter/adapter_model.safetensors");
}

TEST_F(FinetuneCli, FullDiskWhileCheckpointingLosesNothing) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  const int status = std::system(("BAICHUAN_CHECKPOINT_FAULT=fail:4 " + testing::cli_program() + " " +
                                  train_args(data, dir / "out2", "--batch 2 --save-every 2 --max-steps 4 -t 1") +
                                  " >/dev/null 2>" + dir / "err2.txt")
                                     .c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_text_file(dir / "err2.txt");
  EXPECT_NE(err.find("checkpoint at step 4 not written"), std::string::npos) << err;
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(dir / "out2/checkpoint-000002/training_state.json"));
  EXPECT_FALSE(fs::exists(dir / "out2/.checkpoint-000004.tmp"));
  const CliRun resumed = baichuan_cli("finetune --resume " + dir / "out2" + " -o " + dir / "out2 -t 1");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
}

TEST_F(FinetuneCli, MemoryPlanAboveTheLimitIsRefusedWithThePlan) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  const CliRun r = baichuan_cli(train_args(data, dir / "out", "--memory-limit 100M --max-steps 1"));
  EXPECT_EQ(r.exit_code, 1);
  for (const char* word : {"memory plan needs", "--memory-limit is 0.1 GiB", "optimizer state", "activations", "total"})
    EXPECT_NE(r.err.find(word), std::string::npos) << word << "\n" << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST_F(FinetuneCli, BadInputGivesClearErrors) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  auto expect_error = [&](const std::string& args, std::initializer_list<std::string> words) {
    const CliRun r = baichuan_cli(args);
    EXPECT_EQ(r.exit_code, 1) << args;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << "'" << w << "' not in:\n" << r.err;
  };
  expect_error(train_args(data, dir / "o", "--lr nan"), {"--lr nan", "positive finite"});
  expect_error(train_args(data, dir / "o", "--lr -1"), {"--lr -1", "positive finite"});
  expect_error(train_args(data, dir / "o", "--batch 0"), {"--batch 0"});
  // Token ids of another tokenizer (beyond the vocabulary).
  std::vector<int> ids(64, 0), labels(64, -100);
  ids[0] = 195;
  ids[1] = 200000;
  labels[2] = 5;
  testing::write_text(dir / "big.json",
                      nlohmann::json::array({{{"id", "x"}, {"input_ids", ids}, {"labels", labels}}}).dump());
  expect_error(train_args(dir / "big.json", dir / "o", ""), {"big.json", "record 0", "input_ids[1] = 200000",
                                                              "vocab_size 125696", "another tokenizer"});
  // Rows longer than the context: b2-13b-tiny has model_max_length 64.
  ASSERT_EQ(baichuan_cli("preprocess --input " + dir / "b8.json" + " --tokenizer " + testing::tokenizer_path() +
                         " --seq-length 96 -o " + dir / "b96.tokens")
                .exit_code,
            0);
  expect_error("finetune -m " + testing::shared_path("reference/b2-13b-tiny") + " --data " + dir / "b96.tokens" +
                   " -o " + dir / "o",
               {"b96.tokens", "rows of 96 tokens", "context of 64"});
  EXPECT_FALSE(fs::exists(dir / "o"));
}

TEST_F(FinetuneCli, LoraTrainsTheAdaptersAndWritesPeftAndGgufAdapters) {
#ifdef BAICHUAN_SANITIZED_BUILD
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build (the engine's LoRA tests run there)";
#endif
  ScratchDir dir;
  const std::string data = belle8(dir);
  const CliRun r = baichuan_cli(train_args(data, dir / "out", "--lora r=8,alpha=16,dropout=0,targets=W_pack,o_proj,"
                                                               "gate_proj,up_proj,down_proj --batch 8 --lr 3e-2 "
                                                               "--schedule constant --clip 0 --max-steps 8 -t 2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  const std::string csv = read_text_file(dir / "out/train_log.csv");
  const double first = std::stod(csv.substr(csv.find("\n1,") + 3));
  EXPECT_LT(summary.at("loss").get<double>(), 0.85 * first) << csv;  // the frozen base alone cannot move
  EXPECT_NE(r.err.find("memory plan (LoRA r 8, alpha 16 (scale 2)"), std::string::npos) << r.err;
  // 2 layers x r 8 x (in + out): W_pack 32 + 96, o_proj 32 + 32, gate, up and down 32 + 88 each.
  EXPECT_NE(r.err.find("trainable parameters          8832"), std::string::npos) << r.err;
  // The adapter written at the end is the last checkpoint's, and the adapter module reads both the
  // PEFT folder and the GGUF adapter back to the same matrices.
  EXPECT_EQ(read_text_file(dir / "out/adapter/adapter_model.safetensors"),
            read_text_file(dir / "out/checkpoint-000008/adapter_model.safetensors"));
  const ModelConfig config = open_checkpoint(tiny_model()).config;
  const LoraAdapter peft = read_lora_adapter(dir / "out/adapter", config);
  const LoraAdapter gguf = read_lora_adapter(dir / "out/adapter.gguf", config);
  ASSERT_EQ(peft.modules.size(), 10u);
  ASSERT_EQ(gguf.modules.size(), peft.modules.size());
  for (size_t i = 0; i < peft.modules.size(); ++i) {
    EXPECT_EQ(peft.modules[i].scale, 2.0f);
    EXPECT_EQ(gguf.modules[i].scale, peft.modules[i].scale);
    EXPECT_EQ(gguf.modules[i].a, peft.modules[i].a) << i;
    EXPECT_EQ(gguf.modules[i].b, peft.modules[i].b) << i;
  }
  const auto adapter_config = nlohmann::json::parse(read_text_file(dir / "out/adapter/adapter_config.json"));
  EXPECT_EQ(adapter_config.at("r"), 8);
  EXPECT_EQ(adapter_config.at("lora_alpha"), 16);
  EXPECT_EQ(adapter_config.at("inference_mode"), true);
  const CliRun gen = baichuan_cli("generate -m " + tiny_model() + " --lora " + dir / "out/adapter" +
                                  " -p hello -n 4 --temperature 0");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
}

TEST_F(FinetuneCli, LoraResumeIsBitIdenticalAcrossThreadCounts) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // Three CLI runs; LoRA resume runs under the sanitizers in LoraKillInsideACheckpointWrite...
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  ScratchDir dir;
  const std::string data = belle8(dir);
  // Dropout on, two micro-batches per step, a held-out evaluation: every source of randomness.
  const std::string common = "--lora r=4,alpha=8,dropout=0.2,targets=W_pack,o_proj,up_proj --batch 2 --grad-accum 2 "
                             "--lr 1e-2 --warmup 1 --eval-split 0.25 --eval-every 2 --save-every 2 ";
  ASSERT_EQ(baichuan_cli(train_args(data, dir / "full", common + "--max-steps 4 -t 2")).exit_code, 0);
  ASSERT_EQ(baichuan_cli(train_args(data, dir / "part", common + "--max-steps 4 --stop-after 2 -t 1")).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "part/checkpoint-000004"));
  // The LoRA checkpoint names its base: --resume needs no -m.
  const CliRun resumed = baichuan_cli("finetune --resume " + dir / "part" + " -o " + dir / "part --max-steps 4 -t 2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("at step 2"), std::string::npos) << resumed.err;
  EXPECT_EQ(csv_without_seconds(dir / "full/train_log.csv"), csv_without_seconds(dir / "part/train_log.csv"));
  for (const char* file : {"adapter/adapter_model.safetensors", "adapter.gguf", "checkpoint-000004/optimizer.safetensors"})
    EXPECT_EQ(read_text_file(dir / ("full/" + std::string(file))), read_text_file(dir / ("part/" + std::string(file)))) << file;
  // Another base on resume is allowed, with a warning that names the option as the user types it.
  fs::create_directory_symlink(tiny_model(), dir / "base-link");
  const CliRun rebased = baichuan_cli("finetune --resume " + dir / "full" + " -m " + dir / "base-link" + " -o " +
                                      dir / "rebased --max-steps 5 -t 2");
  ASSERT_EQ(rebased.exit_code, 0) << rebased.err;
  EXPECT_NE(rebased.err.find("warning: -m \"" + fs::absolute(dir / "base-link").string() + "\" replaces"),
            std::string::npos) << rebased.err;
}

TEST_F(FinetuneCli, LoraWithoutASpecIsFineTunePysConfig) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  const CliRun r = baichuan_cli(train_args(data, dir / "out", "--max-steps 1 -t 1 --lora"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("trainable_parameters"), 2 * (32 + 96));  // r 1 on W_pack of 2 layers
  const auto c = nlohmann::json::parse(read_text_file(dir / "out/adapter/adapter_config.json"));
  EXPECT_EQ(c.at("r"), 1);
  EXPECT_EQ(c.at("lora_alpha"), 32);
  EXPECT_EQ(c.at("lora_dropout"), 0.1);
  EXPECT_EQ(c.at("target_modules"), nlohmann::json::array({"W_pack"}));
  EXPECT_EQ(c.at("base_model_name_or_path"), fs::absolute(tiny_model()).string());
}

TEST_F(FinetuneCli, BadLoraInputGivesClearErrors) {
  ScratchDir dir;
  const std::string data = belle8(dir);
  auto expect_error = [&](const std::string& rest, std::initializer_list<std::string> words) {
    const CliRun r = baichuan_cli(train_args(data, dir / "o", rest));
    EXPECT_EQ(r.exit_code, 1) << rest;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << "'" << w << "' not in:\n" << r.err;
  };
  expect_error("--lora r=0", {"--lora: r=0"});
  expect_error("--lora r=4,targets=W_pack,q_proj", {"unknown target 'q_proj'"});
  expect_error("--lora rank=4", {"unknown key 'rank'"});
  expect_error("--lora dropout=1.5", {"dropout=1.5", "[0, 1)"});
  expect_error("--lora --gguf q8_0", {"--gguf", "adapter.gguf"});
  EXPECT_FALSE(fs::exists(dir / "o"));
}

}  // namespace finetune_cli_test
}  // namespace baichuan
