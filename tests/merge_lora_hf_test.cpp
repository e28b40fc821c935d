// `baichuan merge-lora --format hf`: the merged Hugging Face folder computes the logits the unmerged
// adapter computes (7B and 13B tiny references, a sharded output, a GGUF base with permuted Q/K rows),
// its W_pack is the base's plus scale * B A in the official layout (computed here in double from the
// adapter), its lm_head rows are the base's as stored, and bad outputs are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "golden.h"
#include "lora_fixtures.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/splitmix64.h"
#include "formats/hf_folder.h"
#include "model/checkpoint.h"
#include "model/lora_adapter.h"
#include "shared_data.h"

namespace baichuan {
namespace merge_lora_hf_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::baichuan_cli;
using testing::quote;
using testing::max_relative_error;
using testing::shared_path;

std::string tiny(const std::string& name) { return shared_path("reference/" + name); }

const Tensor& tensor_named(const formats::HfWeights& w, const std::string& name) {
  for (const Tensor& t : w.tensors)
    if (t.name == name) return t;
  throw Error("no tensor " + name);
}

std::vector<float> floats_of(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_float(t.dtype, t.data, i);
  return v;
}

class MergeLoraHf : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(tiny("b2-7b-tiny/model.safetensors"));
    REQUIRE_SHARED(tiny("b2-13b-tiny/pytorch_model.bin.index.json"));
    dir_ = testing::temp_path("merge_lora_hf_test", "files");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string peft_adapter(const std::string& base, const std::string& name, uint64_t seed = 1) {
    const std::string out = path(name);
    write_peft_adapter(out, lora_fixtures::random_lora(open_checkpoint(base).config, 4, 8, seed));
    return out;
  }

  // Last-position logits of a fixed prompt with an F32 KV cache; `extra` such as --lora.
  std::vector<float> logits(const std::string& model, const std::string& extra) {
    const std::string out = path("logits.f32");
    auto run = baichuan_cli("logits -m " + quote(model) + " -p 'LoRA adapters, merged or not' --kv-type f32 -t 2 -o " +
                            quote(out) + " " + extra);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::vector<float> v = run.exit_code == 0 ? testing::read_f32_file(out) : std::vector<float>{};
    fs::remove(out);
    return v;
  }

  testing::CliRun merge(const std::string& base, const std::string& loras, const std::string& out,
                        const std::string& extra = "") {
    return baichuan_cli("merge-lora -m " + quote(base) + " " + loras + " -o " + quote(out) + " -t 2 " + extra);
  }

  void expect_merged_folder_equals_unmerged(const std::string& model, const std::string& extra) {
    const std::string base = tiny(model), peft = peft_adapter(base, model + "_peft");
    const std::string loras = "--lora " + quote(peft + ":0.5");
    const std::string out = path(model + "_merged");
    auto run = merge(base, loras, out, "--format hf " + extra);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    for (const char* file : {"config.json", "generation_config.json", "tokenizer.model"})
      EXPECT_TRUE(fs::exists(out + "/" + file)) << file;
    const auto unmerged = logits(base, loras);
    EXPECT_LT(max_relative_error(logits(out, ""), unmerged), 1e-5);
    EXPECT_GT(max_relative_error(logits(base, ""), unmerged), 1e-2);  // the adapter changes the logits
  }

  fs::path dir_;
};

TEST_F(MergeLoraHf, MergedFolderLogitsEqualUnmergedLogits7B) { expect_merged_folder_equals_unmerged("b2-7b-tiny", ""); }
TEST_F(MergeLoraHf, MergedFolderLogitsEqualUnmergedLogits13B) { expect_merged_folder_equals_unmerged("b2-13b-tiny", ""); }

TEST_F(MergeLoraHf, ShardedFolderListsItsShardsAndLoads) {
  expect_merged_folder_equals_unmerged("b2-7b-tiny", "--max-shard-size 4M");
  const std::string out = path("b2-7b-tiny_merged");
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  const nlohmann::json index = read_json_file(out + "/model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [name, shard] : index.at("weight_map").items()) shards.insert(shard.get<std::string>());
  EXPECT_GT(shards.size(), 1u);
  for (const auto& shard : shards) EXPECT_TRUE(fs::exists(out + "/" + shard)) << shard;
}

// The merged W_pack against the base's plus 0.5 * scale * B A in double, in the official fused q|k|v,
// rotate-half row order PEFT's B uses; lm_head and a norm are the base's bit for bit.
TEST_F(MergeLoraHf, WPackIsTheBasePlusScaledBAInTheOfficialLayout) {
  const std::string base = tiny("b2-7b-tiny"), peft = peft_adapter(base, "layout_peft", 7);
  const std::string out = path("layout_merged");
  auto run = merge(base, "--lora " + quote(peft + ":0.5"), out + "/");  // a trailing '/' chooses hf
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto merged = formats::read_hf_weights(out), original = formats::read_hf_weights(base);
  const LoraAdapter adapter = read_lora_adapter(peft, open_checkpoint(base).config);
  const LoraModule& m = *adapter.find(1, LoraTarget::WPack);
  const Tensor& w = tensor_named(merged, "model.layers.1.self_attn.W_pack.weight");
  ASSERT_EQ(w.dtype, DType::F32);
  const auto before = floats_of(tensor_named(original, "model.layers.1.self_attn.W_pack.weight")), after = floats_of(w);
  const int64_t out_rows = w.shape[0], in = w.shape[1];
  double worst = 0;
  for (int64_t r = 0; r < out_rows; ++r)
    for (int64_t c = 0; c < in; ++c) {
      double delta = 0;
      for (int64_t k = 0; k < m.rank; ++k)
        delta += static_cast<double>(m.b[static_cast<size_t>(r * m.rank + k)]) * m.a[static_cast<size_t>(k * in + c)];
      const size_t i = static_cast<size_t>(r * in + c);
      worst = std::max(worst, std::abs(after[i] - (before[i] + 0.5 * m.scale * delta)));
    }
  EXPECT_LT(worst, 1e-5);
  EXPECT_EQ(floats_of(tensor_named(merged, "lm_head.weight")), floats_of(tensor_named(original, "lm_head.weight")));
  EXPECT_EQ(floats_of(tensor_named(merged, "model.norm.weight")), floats_of(tensor_named(original, "model.norm.weight")));
}

// From a GGUF base (Q/K rows permuted for llama.cpp) the folder is written in the official row order.
TEST_F(MergeLoraHf, GgufBaseIsWrittenInTheOfficialRowOrder) {
  const std::string gguf = path("base.gguf");
  auto run = baichuan_cli("convert -m " + quote(tiny("b2-13b-tiny")) + " --type f32 --raw-head -o " + quote(gguf));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string peft = peft_adapter(tiny("b2-13b-tiny"), "gguf_peft");
  const std::string out = path("gguf_merged");
  run = merge(gguf, "--lora " + quote(peft), out, "--format hf");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_LT(max_relative_error(logits(out, ""), logits(gguf, "--lora " + quote(peft))), 1e-5);
}

TEST_F(MergeLoraHf, BadOutputsAreRefusedBeforeAnyWork) {
  const std::string base = tiny("b2-7b-tiny"), peft = peft_adapter(base, "bad_peft");
  // A folder holding something that is not a model folder's file is not replaced.
  fs::create_directories(path("busy"));
  { std::ofstream(path("busy/notes.txt")) << "keep me"; }
  auto run = merge(base, "--lora " + quote(peft), path("busy"), "--format hf");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("holds 'notes.txt'"), std::string::npos) << run.err;
  EXPECT_TRUE(fs::exists(path("busy/notes.txt")));
  // The adapter's own folder.
  run = merge(base, "--lora " + quote(peft), peft, "--format hf");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("an input of this merge"), std::string::npos) << run.err;
  EXPECT_TRUE(fs::exists(peft + "/adapter_model.safetensors"));
  // GGUF-only options.
  run = merge(base, "--lora " + quote(peft), path("typed"), "--format hf --type q4_0");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--type q4_0: --format hf writes float32"), std::string::npos) << run.err;
  EXPECT_FALSE(fs::exists(path("typed")));
  run = merge(base, "--lora " + quote(peft), path("x.gguf"), "--max-shard-size 1M");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--max-shard-size applies to --format hf only"), std::string::npos) << run.err;
  // A second merge into a folder written by the first replaces it.
  run = merge(base, "--lora " + quote(peft), path("again"), "--format hf --max-shard-size 4M");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  run = merge(base, "--lora " + quote(peft), path("again"), "--format hf");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(fs::exists(path("again/model.safetensors")));
  EXPECT_FALSE(fs::exists(path("again/model.safetensors.index.json")));
}

}  // namespace merge_lora_hf_test
}  // namespace baichuan
