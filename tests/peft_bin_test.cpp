// PEFT adapters as PEFT versions before 0.6 saved them: adapter_model.bin, a torch.save pickle, read
// through the restricted unpickler (formats/torch_pickle.h). The files come from an independent writer,
// tests/make_peft_bin_adapter.py on Debian's python3-torch, in float32, float16 and bfloat16; every
// value is checked against the formula the script documents. Skipped when torch is absent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/error.h"
#include "model/config.h"
#include "model/lora_adapter.h"

namespace baichuan {
namespace peft_bin_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;

constexpr const char* kPython = "/usr/bin/python3";
constexpr int64_t kRank = 2, kAlpha = 16, kHidden = 32, kIntermediate = 88, kLayers = 2;

// The script's value(seed, i) = ((i * 7 + seed) % 101 - 50) / 64.
float script_value(int64_t seed, int64_t i) { return static_cast<float>((i * 7 + seed) % 101 - 50) / 64.0f; }

ModelConfig tiny_config() {
  return parse_model_config(nlohmann::json{{"vocab_size", 125696}, {"hidden_size", kHidden},
                                           {"intermediate_size", kIntermediate}, {"num_attention_heads", 4},
                                           {"num_hidden_layers", kLayers}, {"model_max_length", 64}}
                                .dump(),
                            "peft bin test", PositionEncoding::Rope);
}

class PeftBin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::temp_path("peft_bin_test", "files");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string script = fs::path(__FILE__).parent_path() / "make_peft_bin_adapter.py";
    if (std::system((std::string(kPython) + " -c 'import torch' >/dev/null 2>&1").c_str()) != 0) {
      skip_reason_ = std::string(kPython) + " cannot import torch (Debian's python3-torch): the fixtures are written by it";
      return;
    }
    // One Python start-up for all four folders.
    std::string command;
    for (const char* dtype : {"float32", "float16", "bfloat16"})
      command += std::string(kPython) + " " + testing::quote(script) + " " + testing::quote((dir_ / dtype).string()) +
                 " " + dtype + " " + std::to_string(kHidden) + " " + std::to_string(kIntermediate) + " " +
                 std::to_string(kLayers) + " " + std::to_string(kRank) + " " + std::to_string(kAlpha) + " && ";
    command += std::string(kPython) + " " + testing::quote(script) + " " + testing::quote((dir_ / "legacy").string()) +
               " float32 32 88 2 2 16 --legacy-format";
    if (std::system(command.c_str()) != 0) skip_reason_ = "running " + script + " failed";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  }

  // Every module of the adapter in `folder` holds the script's values, rank, alpha and scale.
  static void expect_script_values(const std::string& path) {
    const LoraAdapter adapter = read_lora_adapter(path, tiny_config());
    ASSERT_EQ(adapter.modules.size(), static_cast<size_t>(kLayers * 5));
    EXPECT_EQ(adapter.config.base_model_name_or_path, "baichuan-inc/Baichuan2-7B-Base");
    for (const LoraModule& m : adapter.modules) {
      SCOPED_TRACE(lora_module_path(m.layer, m.target));
      EXPECT_EQ(m.rank, kRank);
      EXPECT_EQ(m.alpha, kAlpha);
      EXPECT_EQ(m.scale, static_cast<float>(kAlpha) / kRank);
      const int64_t seed = 1000 * m.layer + 10 * static_cast<int64_t>(m.target);
      ASSERT_EQ(m.a.size(), static_cast<size_t>(kRank * lora_in_features(tiny_config(), m.target)));
      ASSERT_EQ(m.b.size(), static_cast<size_t>(kRank * lora_out_features(tiny_config(), m.target)));
      for (size_t i = 0; i < m.a.size(); ++i) ASSERT_EQ(m.a[i], script_value(seed, static_cast<int64_t>(i))) << "A " << i;
      for (size_t i = 0; i < m.b.size(); ++i) ASSERT_EQ(m.b[i], script_value(seed + 1, static_cast<int64_t>(i))) << "B " << i;
    }
  }

  static inline fs::path dir_;
  static inline std::string skip_reason_;
};

TEST_F(PeftBin, Float32AdapterReadsExactly) { expect_script_values((dir_ / "float32").string()); }
TEST_F(PeftBin, Float16AdapterReadsExactly) { expect_script_values((dir_ / "float16").string()); }
TEST_F(PeftBin, BFloat16AdapterReadsExactly) { expect_script_values((dir_ / "bfloat16").string()); }

TEST_F(PeftBin, TheBinFileItselfNamesTheAdapter) {
  expect_script_values((dir_ / "bfloat16/adapter_model.bin").string());
  const auto files = lora_adapter_files((dir_ / "float16").string());
  EXPECT_NE(std::find(files.begin(), files.end(), (dir_ / "float16/adapter_model.bin").string()), files.end());
}

// torch.save's format before PyTorch 1.6 (a bare pickle stream, no zip) is refused naming the file.
TEST_F(PeftBin, PreZipTorchSaveIsOneClearError) {
  const std::string bin = (dir_ / "legacy/adapter_model.bin").string();
  try {
    read_lora_adapter((dir_ / "legacy").string(), tiny_config());
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(bin + ": torch.save's legacy format (PyTorch before 1.6) is not supported", 0), 0u) << m;
  }
}

// An adapter for another model shape is refused naming the .bin file and the tensor.
TEST_F(PeftBin, WrongShapeNamesTheBinFile) {
  ModelConfig wider = tiny_config();
  wider.hidden_size = 64;
  try {
    read_lora_adapter((dir_ / "float16").string(), wider);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find((dir_ / "float16/adapter_model.bin").string() + ": tensor 'base_model.model.model.layers.0."),
              std::string::npos)
        << m;
  }
}

}  // namespace peft_bin_test
}  // namespace baichuan
