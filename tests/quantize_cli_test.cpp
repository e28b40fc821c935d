// `baichuan quantize IN OUT TYPE` (and the same types in convert and init): every type from a
// Hugging Face folder, the llama.cpp mixes on a 32-layer model, fallbacks for short rows, requantizing
// a quantized file, NormHead before quantization, the random blocks of init, and clear errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "convert/quant_mix.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "cli_runner.h"
#include "shared_data.h"

namespace baichuan {
namespace quantize_cli_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using nlohmann::json;
using testing::shared_path;

using testing::baichuan_cli;
using testing::CliRun;

std::string temp(const std::string& name) { return testing::temp_path("qcli", name); }

std::map<std::string, DType> tensor_types(const std::string& path) {
  std::map<std::string, DType> types;
  for (const auto& t : gguf::read_file(path).tensors) types[t.name] = t.dtype;
  return types;
}

// Dequantized (or converted) values of a whole tensor.
std::vector<float> values_of(const Tensor& t) {
  int64_t cols = t.shape.back(), rows = t.numel() / cols;
  std::vector<float> v(static_cast<size_t>(t.numel()));
  size_t row_bytes = bytes_for(t.dtype, cols, t.name);
  for (int64_t r = 0; r < rows; ++r) {
    float* out = v.data() + r * cols;
    const std::byte* src = t.data + static_cast<size_t>(r) * row_bytes;
    if (is_quantized(t.dtype)) {
      quant::dequantize_row(t.dtype, src, out, cols);
    } else {
      for (int64_t i = 0; i < cols; ++i) out[i] = load_float(t.dtype, src, static_cast<size_t>(i));
    }
  }
  return v;
}

const Tensor& tensor_named(const gguf::File& f, const std::string& name) {
  for (const auto& t : f.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

bool k_quants_available() { return quant::can_quantize(DType::Q4_K) && quant::can_quantize(DType::Q6_K); }

// A config.json of `layers` layers with rows of 256 (whole K blocks) and an FFN of 704 (whole
// blocks of 32 but not of 256, so ffn_down exercises the K fallbacks).
std::string write_config(const std::string& name, int layers) {
  json c = json::parse(read_text_file(shared_path("reference/b2-7b-tiny/config.json")));
  c["hidden_size"] = 256;
  c["intermediate_size"] = 704;
  c["num_attention_heads"] = 2;
  c["num_hidden_layers"] = layers;
  std::string path = temp(name);
  std::ofstream(path) << c.dump(2);
  return path;
}

class QuantizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(model_ + "/config.json");
  }
  void expect_generates(const std::string& path) {
    CliRun g = baichuan_cli("generate -m " + path + " -p hello -n 2 --greedy --ignore-eos --json -t 2");
    ASSERT_EQ(g.exit_code, 0) << path << "\n" << g.err;
    EXPECT_EQ(json::parse(g.out)["tokens"].size(), 2u) << path;
  }
  void expect_error(const std::string& args, const std::string& words) {
    CliRun r = baichuan_cli(args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(words), std::string::npos) << "stderr of `" << args << "` lacks '" << words << "':\n" << r.err;
  }
  std::string model_;
};

// The reference tiny model has hidden 32 and an FFN of 88: block types of 32 fit the rows of 32
// (ffn_down's rows of 88 stay F16), K types fall back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0).
TEST_F(QuantizeCli, EveryTypeFromAHuggingFaceFolderLoadsAndGenerates) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 13 CLI round trips, 43 s under AddressSanitizer; every quantizer runs under it in quant_*_test.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  struct Case {
    const char* name;
    DType matrix, ffn_down, head;
    uint32_t file_type;
  };
  const Case cases[] = {
      {"f32", DType::F32, DType::F32, DType::F32, 0},        {"F16", DType::F16, DType::F16, DType::F16, 1},
      {"bf16", DType::BF16, DType::BF16, DType::F16, 32},  // a normalised head is kept in F16 (3 more bits)   {"q8_0", DType::Q8_0, DType::F16, DType::Q8_0, 7},
      {"Q4_0", DType::Q4_0, DType::F16, DType::Q4_0, 2},     {"q4_1", DType::Q4_1, DType::F16, DType::Q4_1, 3},
      {"q5_0", DType::Q5_0, DType::F16, DType::Q5_0, 8},     {"q5_1", DType::Q5_1, DType::F16, DType::Q5_1, 9},
      {"q4_k", DType::Q5_0, DType::F16, DType::Q5_0, 14},    {"q5_k", DType::Q5_1, DType::F16, DType::Q5_1, 16},
      {"Q6_K", DType::Q8_0, DType::F16, DType::Q8_0, 18},    {"q4_k_m", DType::Q5_0, DType::F16, DType::Q8_0, 15},
      {"Q5_K_M", DType::Q5_1, DType::F16, DType::Q8_0, 17},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string out = temp(std::string("hf-") + c.name + ".gguf");
    CliRun r = baichuan_cli("quantize " + model_ + " " + out + " " + c.name + " -t 2");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // One progress line per tensor and a summary.
    EXPECT_NE(r.err.find("blk.1.ffn_down.weight"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("[  21/21] output.weight"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("wrote " + out), std::string::npos) << r.err;
    gguf::File f = gguf::read_file(out);
    EXPECT_EQ(f.get("general.file_type").as_int("k"), c.file_type);
    auto types = tensor_types(out);
    EXPECT_EQ(types.size(), 21u);
    EXPECT_EQ(types["blk.0.attn_norm.weight"], DType::F32);
    EXPECT_EQ(types["output_norm.weight"], DType::F32);
    EXPECT_EQ(types["blk.0.attn_q.weight"], c.matrix);
    EXPECT_EQ(types["blk.1.ffn_up.weight"], c.matrix);
    EXPECT_EQ(types["token_embd.weight"], c.matrix);
    EXPECT_EQ(types["blk.1.ffn_down.weight"], c.ffn_down);
    EXPECT_EQ(types["output.weight"], c.head);
    expect_generates(out);
    fs::remove(out);
  }
}

TEST_F(QuantizeCli, ConvertAndInitTakeTheSameTypeNames) {
  std::string out = temp("convert-q4km.gguf");
  CliRun r = baichuan_cli("convert -m " + model_ + " -o " + out + " --type Q4_K_M");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tensor_types(out)["output.weight"], DType::Q8_0);
  std::string init = temp("init-q5km.gguf");
  r = baichuan_cli("init --config " + model_ + "/config.json --type q5_k_m -o " + init);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tensor_types(init)["blk.0.attn_q.weight"], DType::Q5_1);
  expect_generates(init);
  expect_error("convert -m " + model_ + " -o " + out + " --type q3_k", "unknown type 'q3_k'");
  expect_error("init --preset tiny --type int4 -o " + init, "unknown type 'int4'");
  fs::remove(out);
  fs::remove(init);
}

TEST_F(QuantizeCli, ClearErrors) {
  std::string out = temp("err.gguf");
  expect_error("quantize " + model_ + " " + out + " q3_k", "unknown type 'q3_k'");
  expect_error("quantize " + model_ + " " + out + " q4", "q4_k_m");
  EXPECT_FALSE(fs::exists(out));
  expect_error("quantize " + model_ + "/nothing-here " + out + " q4_0", "nothing-here");
  EXPECT_FALSE(fs::exists(out));
  std::string in = temp("same.gguf");
  ASSERT_EQ(baichuan_cli("quantize " + model_ + " " + in + " q8_0").exit_code, 0);
  auto before = fs::file_size(in);
  expect_error("quantize " + in + " " + in + " q4_0", "input");
  expect_error("quantize " + in + " " + fs::path(in).parent_path().string() + "/./" + fs::path(in).filename().string() + " q4_0",
               "input");
  EXPECT_EQ(fs::file_size(in), before);
  CliRun r = baichuan_cli("quantize " + in);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << "crashed";
  fs::remove(in);
}

TEST_F(QuantizeCli, RequantizesAQuantizedFile) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 25 s under AddressSanitizer; quantize runs there in the other QuantizeCli tests.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  std::string q8 = temp("re-q8.gguf"), q4 = temp("re-q4.gguf"), again = temp("re-q8-again.gguf");
  ASSERT_EQ(baichuan_cli("quantize " + model_ + " " + q8 + " q8_0").exit_code, 0);
  CliRun r = baichuan_cli("quantize " + q8 + " " + q4 + " q4_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tensor_types(q4)["blk.0.attn_k.weight"], DType::Q4_0);
  expect_generates(q4);
  // Same type in and out: tensors are copied as they are (the head is normalised again, a no-op up to rounding).
  ASSERT_EQ(baichuan_cli("quantize " + q8 + " " + again + " q8_0").exit_code, 0);
  gguf::File a = gguf::read_file(q8), b = gguf::read_file(again);
  const Tensor &ta = tensor_named(a, "blk.1.attn_v.weight"), &tb = tensor_named(b, "blk.1.attn_v.weight");
  ASSERT_EQ(ta.nbytes, tb.nbytes);
  EXPECT_EQ(std::memcmp(ta.data, tb.data, ta.nbytes), 0);
  // Back to float: the values are the dequantized Q8_0 ones.
  std::string f32 = temp("re-f32.gguf");
  ASSERT_EQ(baichuan_cli("quantize " + q8 + " " + f32 + " f32").exit_code, 0);
  gguf::File c = gguf::read_file(f32);
  EXPECT_EQ(values_of(tensor_named(c, "blk.1.attn_v.weight")), values_of(ta));
  for (const auto& p : {q8, q4, again, f32}) fs::remove(p);
}

TEST_F(QuantizeCli, NormHeadIsAppliedBeforeTheHeadIsQuantized) {
  std::string out = temp("head.gguf");
  ASSERT_EQ(baichuan_cli("quantize " + model_ + " " + out + " q8_0").exit_code, 0);
  gguf::File f = gguf::read_file(out);
  const Tensor& head = tensor_named(f, "output.weight");
  auto v = values_of(head);
  int64_t cols = head.shape[1];
  for (int64_t r : {int64_t{0}, int64_t{1000}, head.shape[0] - 1}) {
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += v[r * cols + i] * v[r * cols + i];
    EXPECT_NEAR(std::sqrt(sum), 1.0, 0.02) << "row " << r;
  }
  fs::remove(out);
}

// init writes block types as random blocks directly: values of about the requested spread, centred.
TEST_F(QuantizeCli, InitRandomBlocksHaveTheRequestedSpread) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 16 CLI runs, 32 s under AddressSanitizer; `init` runs under it in the cli and bench tests.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  std::string cfg = write_config("spread.json", 1);
  for (const char* type : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"}) {
    SCOPED_TRACE(type);
    std::string out = temp(std::string("spread-") + type + ".gguf");
    CliRun r = baichuan_cli("init --config " + cfg + " --type " + type + " --std 0.05 -o " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    gguf::File f = gguf::read_file(out);
    const Tensor& t = tensor_named(f, "blk.0.attn_q.weight");
    EXPECT_EQ(t.dtype, parse_file_type(type).base);
    auto v = values_of(t);
    double sum = 0, sq = 0;
    for (float x : v) sum += x, sq += static_cast<double>(x) * x;
    double mean = sum / v.size(), sd = std::sqrt(sq / v.size() - mean * mean);
    EXPECT_NEAR(sd, 0.05, 0.005);
    EXPECT_NEAR(mean, 0.0, 0.003);
    for (float x : values_of(tensor_named(f, "blk.0.attn_norm.weight"))) ASSERT_EQ(x, 1.0f);
    // The same seed gives the same file.
    std::string again = out + ".again";
    ASSERT_EQ(baichuan_cli("init --config " + cfg + " --type " + type + " --std 0.05 -t 1 -o " + again).exit_code, 0);
    EXPECT_EQ(read_text_file(out), read_text_file(again));
    fs::remove(out);
    fs::remove(again);
  }
}

// The llama.cpp mixes on a 7B-deep (32-layer) model: the tensors that get more bits.
TEST_F(QuantizeCli, MixesOnAThirtyTwoLayerModel) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // Type choice only, 84 s under AddressSanitizer; the quantizers it calls run under it elsewhere.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  std::string cfg = write_config("deep.json", 32);
  std::string f16 = temp("deep-f16.gguf");
  ASSERT_EQ(baichuan_cli("init --config " + cfg + " --type f16 -o " + f16).exit_code, 0);
  const std::set<int> more_bits = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  for (const char* mix : {"q4_k_m", "q5_k_m"}) {
    SCOPED_TRACE(mix);
    bool q4 = std::string(mix) == "q4_k_m";
    DType base = q4 ? DType::Q4_K : DType::Q5_K;
    DType ffn_fallback = q4 ? DType::Q5_0 : DType::Q5_1;  // rows of 704 are not whole K blocks
    std::string init = temp(std::string("deep-init-") + mix + ".gguf");
    ASSERT_EQ(baichuan_cli("init --config " + cfg + " --type " + mix + " -o " + init).exit_code, 0);
    auto types = tensor_types(init);
    EXPECT_EQ(types["token_embd.weight"], base);
    EXPECT_EQ(types["output.weight"], DType::Q6_K);
    EXPECT_EQ(types["output_norm.weight"], DType::F32);
    for (int l = 0; l < 32; ++l) {
      std::string p = "blk." + std::to_string(l) + ".";
      bool more = more_bits.count(l) > 0;
      EXPECT_EQ(types[p + "attn_v.weight"], more ? DType::Q6_K : base) << l;
      EXPECT_EQ(types[p + "ffn_down.weight"], more ? DType::Q8_0 : ffn_fallback) << l;
      for (const char* role : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
        EXPECT_EQ(types[p + role + ".weight"], base) << l << role;
      EXPECT_EQ(types[p + "ffn_norm.weight"], DType::F32);
    }
    EXPECT_EQ(gguf::read_file(init).get("general.file_type").as_int("k"), q4 ? 15 : 17);
    expect_generates(init);
    if (k_quants_available()) {
      std::string out = temp(std::string("deep-") + mix + ".gguf");
      CliRun r = baichuan_cli("quantize " + f16 + " " + out + " " + mix + " -t 2");
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(tensor_types(out), types);
      expect_generates(out);
      fs::remove(out);
    }
    fs::remove(init);
  }
  fs::remove(f16);
  if (!k_quants_available()) GTEST_SKIP() << "quantize to K types skipped: this build has no K-quant quantizer yet";
}

}  // namespace
}  // namespace baichuan
