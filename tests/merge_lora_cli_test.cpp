// `baichuan merge-lora` and `--lora` end to end: the merged checkpoint computes the logits the
// unmerged adapters compute, on Hugging Face and GGUF bases, and bad outputs and adapters are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "cli_runner.h"
#include "lora_fixtures.h"
#include "core/splitmix64.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_adapter.h"
#include "shared_data.h"

namespace baichuan {
namespace merge_lora_cli_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::baichuan_cli;
using testing::quote;
using testing::shared_path;

std::string tiny(const std::string& name) { return shared_path("reference/" + name); }

std::string temp(const std::string& name) {
  return testing::temp_path("merge_lora_cli_test", name);
}

std::vector<float> read_logits(const std::string& path) { return testing::read_f32_file(path); }

// Last-position logits of the prompt, F32 KV cache; extra arguments such as --lora.
std::vector<float> cli_logits(const std::string& model, const std::string& extra, const std::string& name) {
  const std::string out = temp(name + ".f32");
  auto run = baichuan_cli("logits -m " + quote(model) + " -p 'LoRA adapters, merged or not' --kv-type f32 -t 2 -o " +
                          quote(out) + " " + extra);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  return run.exit_code == 0 ? read_logits(out) : std::vector<float>{};
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || b.empty()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

class MergeLoraCli : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(tiny("b2-7b-tiny/model.safetensors"));
    REQUIRE_SHARED(tiny("b2-13b-tiny/pytorch_model.bin.index.json"));
  }
  // A PEFT folder and a GGUF LoRA file for the model at `base`.
  std::pair<std::string, std::string> adapters(const std::string& base, const std::string& name) {
    const ModelConfig c = open_checkpoint(base).config;
    const std::string peft = temp(name + "_peft");
    write_peft_adapter(peft, lora_fixtures::random_lora(c, 4, 8, 1));
    const std::string gguf = temp(name + "_lora.gguf");
    write_gguf_lora_adapter(gguf, lora_fixtures::random_lora(c, 2, 2, 2), c);
    return {peft, gguf};
  }

  // merge-lora with a PEFT adapter scaled by 0.5 and a GGUF LoRA adapter, against the same two applied
  // unmerged.
  void expect_merged_equals_unmerged(const std::string& model) {
    const std::string base = tiny(model);
    auto [peft, gguf] = adapters(base, model);
    const std::string loras = "--lora " + quote(peft + ":0.5") + " --lora " + quote(gguf);
    const std::string merged = temp(model + "_merged.gguf");
    auto run = baichuan_cli("merge-lora -m " + quote(base) + " " + loras + " -o " + quote(merged) + " --type f32 -t 2");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("merging LoRA adapter " + peft), std::string::npos) << run.err;
    const auto unmerged = cli_logits(base, loras, model + "_unmerged");
    EXPECT_LT(relative_error(cli_logits(merged, "", model + "_merged"), unmerged), 1e-5);
    EXPECT_GT(relative_error(cli_logits(base, "", model + "_base"), unmerged), 1e-2);
  }
};

TEST_F(MergeLoraCli, MergedLogitsEqualUnmergedLogits7B) { expect_merged_equals_unmerged("b2-7b-tiny"); }
TEST_F(MergeLoraCli, MergedLogitsEqualUnmergedLogits13B) { expect_merged_equals_unmerged("b2-13b-tiny"); }

TEST_F(MergeLoraCli, MergesIntoAGgufBaseWithPermutedRows) {
  const std::string base = temp("base.gguf");
  auto run = baichuan_cli("convert -m " + quote(tiny("b2-7b-tiny")) + " --type f32 -o " + quote(base));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto [peft, gguf] = adapters(tiny("b2-7b-tiny"), "gguf_base");
  const std::string merged = temp("gguf_base_merged.gguf");
  run = baichuan_cli("merge-lora -m " + quote(base) + " --lora " + quote(peft) + " -o " + quote(merged) + " --type f32");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto unmerged = cli_logits(base, "--lora " + quote(peft), "gguf_base_unmerged");
  EXPECT_NE(unmerged, cli_logits(tiny("b2-7b-tiny"), "", "gguf_base_plain"));
  EXPECT_LT(relative_error(cli_logits(merged, "", "gguf_base_merged"), unmerged), 1e-5);
}

TEST_F(MergeLoraCli, TheLoadLineNamesTheAdapters) {
  auto [peft, gguf] = adapters(tiny("b2-7b-tiny"), "load_line");
  auto run = baichuan_cli("generate -m " + quote(tiny("b2-7b-tiny")) + " -p hi -n 2 --greedy --lora " + quote(peft + ":2"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("applying LoRA adapter " + peft + " unmerged: 10 modules"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("scale 2 x 2"), std::string::npos) << run.err;
}

TEST_F(MergeLoraCli, RefusesToOverwriteItsInputs) {
  auto [peft, gguf] = adapters(tiny("b2-7b-tiny"), "overwrite");
  const std::string before = read_text_file(peft + "/adapter_model.safetensors");
  for (const std::string& out : {peft + "/adapter_model.safetensors", peft + "/adapter_config.json"}) {
    auto run = baichuan_cli("merge-lora -m " + quote(tiny("b2-7b-tiny")) + " --lora " + quote(peft) + " -o " + quote(out));
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_NE(run.err.find("a file of the LoRA adapter"), std::string::npos) << run.err;
  }
  EXPECT_EQ(read_text_file(peft + "/adapter_model.safetensors"), before);
  auto run = baichuan_cli("merge-lora -m " + quote(tiny("b2-7b-tiny")) + " --lora " + quote(gguf) + " -o " + quote(gguf));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("LoRA adapter"), std::string::npos) << run.err;
  run = baichuan_cli("merge-lora -m " + quote(tiny("b2-7b-tiny")) + " --lora " + quote(peft) + " -o " +
                     quote(tiny("b2-7b-tiny/model.safetensors")));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("the checkpoint being read"), std::string::npos) << run.err;
}

TEST_F(MergeLoraCli, BadAdaptersAreOneClearError) {
  auto [peft, gguf] = adapters(tiny("b2-7b-tiny"), "bad");
  // An adapter for the 7B tiny model on the 13B tiny model: the shapes do not match.
  auto run = baichuan_cli("logits -m " + quote(tiny("b2-13b-tiny")) + " -p hi -o " + quote(temp("bad.f32")) + " --lora " + quote(peft));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("error: " + peft + "/adapter_model.safetensors: tensor "), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("lora_A.weight' has shape [4, 32], expected [4, 40]"), std::string::npos) << run.err;
  run = baichuan_cli("merge-lora -m " + quote(tiny("b2-7b-tiny")) + " --lora " + quote(temp("absent")) + " -o " + quote(temp("x.gguf")));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("error: " + temp("absent") + ": no such file or directory"), std::string::npos) << run.err;
  EXPECT_FALSE(fs::exists(temp("x.gguf")));
  run = baichuan_cli("merge-lora -m " + quote(tiny("b2-7b-tiny")) + " -o " + quote(temp("x.gguf")));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--lora is required"), std::string::npos) << run.err;
  run = baichuan_cli("logits -m " + quote(tiny("b2-7b-tiny")) + " -p hi -o " + quote(temp("bad.f32")) + " --lora " +
                     quote(peft + ":inf"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("finite"), std::string::npos) << run.err;
}

}  // namespace merge_lora_cli_test
}  // namespace baichuan
