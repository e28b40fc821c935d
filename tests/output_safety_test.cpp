// Writers never destroy their input, and crafted sizes or thread counts are refused up front with a
// clear one-line error and exit 1 (the hardening issue, points 1, 4, 6, 12).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli_runner.h"
#include "core/mapped_file.h"
#include "shared_data.h"

namespace baichuan {
namespace output_safety_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::baichuan_cli;
using testing::quote;
using testing::shared_path;

class OutputSafety : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(shared_path("reference/b2-7b-tiny/model.safetensors"));
    dir_ = testing::temp_path("outsafe", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* folder : {"b2-7b-tiny", "b2-13b-tiny", "b2-7b-tiny-mindspore"})
      fs::copy(shared_path(std::string("reference/") + folder), dir_ + "/" + folder);
    for (const auto& e : fs::recursive_directory_iterator(dir_))
      if (e.is_regular_file()) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `args`, expects exit 1 with an error naming the input, and the file `guarded` unchanged.
  void expect_refused(const std::string& args, const std::string& guarded) {
    const std::string before = read_text_file(guarded);
    auto run = baichuan_cli(args);
    EXPECT_EQ(run.exit_code, 1) << args << "\n" << run.err;
    EXPECT_NE(run.err.find("writing there would destroy the input"), std::string::npos) << args << "\n" << run.err;
    EXPECT_EQ(read_text_file(guarded), before) << guarded << " changed by: " << args;
  }
  std::string path(const std::string& relative) const { return dir_ + "/" + relative; }

  std::string dir_;
};

TEST_F(OutputSafety, ConvertAndQuantizeRefuseEveryFileTheLoaderReads) {
  const std::string m7 = path("b2-7b-tiny"), m13 = path("b2-13b-tiny"), ms = path("b2-7b-tiny-mindspore");
  expect_refused("convert -m " + quote(m7) + " -o " + quote(m7 + "/model.safetensors"), m7 + "/model.safetensors");
  expect_refused("quantize " + quote(m7) + " " + quote(m7 + "/model.safetensors") + " q4_0", m7 + "/model.safetensors");
  expect_refused("convert -m " + quote(m7) + " -o " + quote(m7 + "/tokenizer.model"), m7 + "/tokenizer.model");
  expect_refused("convert -m " + quote(m7) + " -o " + quote(m7 + "/config.json"), m7 + "/config.json");
  const std::string shard = m13 + "/pytorch_model-00002-of-00002.bin";
  expect_refused("quantize " + quote(m13) + " " + quote(shard) + " q8_0", shard);
  expect_refused("convert -m " + quote(m13) + " -o " + quote(m13 + "/pytorch_model.bin.index.json"),
                 m13 + "/pytorch_model.bin.index.json");
  const std::string ckpt = ms + "/baichuan2_7b_tiny.ckpt";
  expect_refused("convert -m " + quote(ckpt) + " -o " + quote(ckpt), ckpt);
  expect_refused("quantize " + quote(ckpt) + " " + quote(ms + "/tokenizer.model") + " q8_0", ms + "/tokenizer.model");
  // An explicit --tokenizer is read too.
  expect_refused("convert -m " + quote(ckpt) + " --tokenizer " + quote(m7 + "/tokenizer.model") + " -o " +
                     quote(m7 + "/tokenizer.model"),
                 m7 + "/tokenizer.model");
}

TEST_F(OutputSafety, SymlinksHardLinksAndTheSameGgufAreRecognised) {
  const std::string m7 = path("b2-7b-tiny");
  fs::create_symlink(m7 + "/config.json", path("config-link.json"));
  expect_refused("convert -m " + quote(m7) + " -o " + quote(path("config-link.json")), m7 + "/config.json");
  fs::create_hard_link(m7 + "/model.safetensors", path("weights-hardlink.gguf"));
  expect_refused("quantize " + quote(m7) + " " + quote(path("weights-hardlink.gguf")) + " q8_0", m7 + "/model.safetensors");
  // Through a relative path with ".." too.
  expect_refused("convert -m " + quote(m7) + " -o " + quote(m7 + "/../b2-7b-tiny/model.safetensors"),
                 m7 + "/model.safetensors");

  const std::string gguf = path("f16.gguf");
  auto made = baichuan_cli("convert -m " + quote(m7) + " -o " + quote(gguf));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  expect_refused("convert -m " + quote(gguf) + " -o " + quote(gguf) + " --type q8_0", gguf);
  expect_refused("quantize " + quote(gguf) + " " + quote(gguf) + " q4_0", gguf);

  // A new file inside the checkpoint's folder is fine, and so is replacing an earlier output there.
  for (int i = 0; i < 2; ++i) {
    auto ok = baichuan_cli("quantize " + quote(m7) + " " + quote(m7 + "/q8_0.gguf") + " q8_0");
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
  }
  auto folder = baichuan_cli("convert -m " + quote(m7) + " -o " + quote(m7));
  EXPECT_EQ(folder.exit_code, 1);
  EXPECT_NE(folder.err.find("is a folder"), std::string::npos) << folder.err;
}

TEST_F(OutputSafety, OutputPathsAreCheckedBeforeTheWork) {
  const std::string m7 = path("b2-7b-tiny");
  auto eval = baichuan_cli("eval -m " + quote(m7) + " --task ceval --data " + quote(shared_path("data/eval/ceval")) +
                           " --json " + quote(path("no-such-folder/run.json")));
  EXPECT_EQ(eval.exit_code, 1);
  EXPECT_NE(eval.err.find("the folder"), std::string::npos) << eval.err;
  EXPECT_EQ(eval.err.find("loaded"), std::string::npos) << "the model was loaded before the check:\n" << eval.err;
  const std::string before = read_text_file(m7 + "/model.safetensors");
  auto logits = baichuan_cli("logits -m " + quote(m7) + " -p hi -o " + quote(m7 + "/model.safetensors"));
  EXPECT_EQ(logits.exit_code, 1) << logits.err;
  EXPECT_EQ(read_text_file(m7 + "/model.safetensors"), before);
}

// An adapter given to --lora is an input too: as a file, or any file of a PEFT folder. Checked before
// the adapters are read, so these placeholder files need not be adapters.
TEST_F(OutputSafety, AdaptersGivenToLoraAreNotOverwritten) {
  const std::string m7 = path("b2-7b-tiny"), gguf = path("adapter.gguf"), peft = path("peft");
  std::ofstream(gguf) << "an adapter";
  fs::create_directories(peft);
  std::ofstream(peft + "/adapter_model.safetensors") << "adapter weights";
  expect_refused("logits -m " + quote(m7) + " --lora " + quote(gguf) + " -p hi -o " + quote(gguf), gguf);
  expect_refused("logits -m " + quote(m7) + " --lora " + quote(gguf + ":0.5") + " -p hi -o " + quote(gguf), gguf);
  expect_refused("logits -m " + quote(m7) + " --lora " + quote(peft) + " -p hi -o " +
                     quote(peft + "/adapter_model.safetensors"),
                 peft + "/adapter_model.safetensors");
}

// A crafted layer count is refused at once, naming the file, field and value (it used to allocate
// gigabytes for 10-18 s and then print "out of memory").
TEST_F(OutputSafety, CraftedSizesAndThreadCountsAreOneLineErrors) {
  const std::string m7 = path("b2-7b-tiny");
  std::string config = read_text_file(m7 + "/config.json");
  const std::string key = "\"num_hidden_layers\": 2";
  auto at = config.find(key);
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, key.size(), "\"num_hidden_layers\": 2147483647");
  {
    std::FILE* f = std::fopen((m7 + "/config.json").c_str(), "wb");
    std::fwrite(config.data(), 1, config.size(), f);
    std::fclose(f);
  }
  auto layers = baichuan_cli("generate -m " + quote(m7) + " -p hi -n 1");
  EXPECT_EQ(layers.exit_code, 1);
  EXPECT_NE(layers.err.find("config.json: num_hidden_layers is 2147483647"), std::string::npos) << layers.err;

  const std::string ok = shared_path("reference/b2-7b-tiny");
  const auto hardware = std::to_string(sysconf(_SC_NPROCESSORS_ONLN));
  for (const std::string& cmd : {"generate -m " + quote(ok) + " -p hi -n 1 -t 100000",
                                 "quantize " + quote(ok) + " " + quote(path("x.gguf")) + " q8_0 -t 100000",
                                 "bench -m " + quote(ok) + " -p 1 -n 0 -t 1,100000"}) {
    auto run = baichuan_cli(cmd);
    EXPECT_EQ(run.exit_code, 1) << cmd;
    EXPECT_NE(run.err.find("error: "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("100000 is more than the " + hardware + " hardware threads"), std::string::npos) << run.err;
  }
  // A context whose KV cache could never fit in memory is refused with the sizes, not "out of memory".
  auto eval = baichuan_cli("eval -m " + quote(ok) + " --task ceval --data " + quote(shared_path("data/eval/ceval")) +
                           " --limit 1 --ctx 2000000000");
  EXPECT_EQ(eval.exit_code, 1) << eval.err;
  EXPECT_NE(eval.err.find("a KV cache of 2000000000 positions (F16, 2 layers) would need 476.8 GiB, more than the"),
            std::string::npos)
      << eval.err;
}

}  // namespace
}  // namespace baichuan
