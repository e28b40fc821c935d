// LoRA adapters: the PEFT and GGUF LoRA readers and writers, and unmerged application. The reference
// for the applied adapters is independent of the engine's LoRA code: the base weights plus
// scale * B A computed here in double, written as a plain checkpoint and run without adapters.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "convert/gguf_convert.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/splitmix64.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_adapter.h"
#include "model/lora_apply.h"
#include "model/model.h"
#include "model/model_context.h"
#include "shared_data.h"
#include "test_files.h"

namespace baichuan {
namespace lora_adapter_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::shared_path;

std::string tiny(const std::string& name) { return shared_path("reference/" + name); }

std::string temp(const std::string& name) {
  return testing::temp_path("lora_adapter_test", name);
}

std::vector<float> random_values(size_t n, uint64_t& state, double amplitude) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(amplitude * (static_cast<double>(splitmix64(state) >> 11) * 0x1p-53 * 2 - 1));
  return v;
}

// An adapter on `targets` of every layer, A and B random (B is not zero, unlike a fresh PEFT init, so
// the adapter changes the logits).
LoraAdapter random_adapter(const ModelConfig& c, const std::vector<LoraTarget>& targets, int64_t r, double alpha,
                           uint64_t seed, bool rslora = false) {
  LoraAdapter a;
  a.config.r = r;
  a.config.lora_alpha = alpha;
  a.config.lora_dropout = 0.05;
  a.config.use_rslora = rslora;
  a.config.base_model_name_or_path = "b2-tiny";
  for (LoraTarget t : targets) a.config.target_modules.push_back(lora_target_name(t));
  uint64_t state = seed;
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (LoraTarget t : kLoraTargets) {
      if (std::find(targets.begin(), targets.end(), t) == targets.end()) continue;
      LoraModule m;
      m.layer = l;
      m.target = t;
      m.rank = r;
      m.alpha = alpha;
      m.scale = lora_scale(alpha, r, rslora);
      m.a = random_values(static_cast<size_t>(r * lora_in_features(c, t)), state, 0.3);
      m.b = random_values(static_cast<size_t>(lora_out_features(c, t) * r), state, 0.3);
      a.modules.push_back(std::move(m));
    }
  return a;
}

const std::vector<LoraTarget> kAllTargets(std::begin(kLoraTargets), std::end(kLoraTargets));

// A safetensors file built by hand (not by the project's writer), for the F16/BF16 and refusal cases.
struct HandTensor {
  std::string name, dtype;  // "F32", "F16", "BF16"
  std::vector<int64_t> shape;
  std::vector<float> values;
};

std::string hand_safetensors(const std::vector<HandTensor>& tensors) {
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  std::string data;
  for (const auto& t : tensors) {
    const size_t begin = data.size();
    for (float v : t.values) {
      if (t.dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const uint16_t h = t.dtype == "F16" ? f32_to_f16(v) : f32_to_bf16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  uint64_t n = text.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + text + data;
}

void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string module_name(int64_t layer, const std::string& module) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + module;
}

// A PEFT folder written by hand: one adapter_config.json and the given tensors.
std::string hand_peft(const std::string& name, const nlohmann::json& config, const std::vector<HandTensor>& tensors) {
  const std::string dir = temp(name);
  fs::create_directories(dir);
  write_text(dir + "/adapter_config.json", config.dump());
  write_text(dir + "/adapter_model.safetensors", hand_safetensors(tensors));
  return dir;
}

// W_pack lora_A / lora_B tensors for every layer of the tiny models (hidden 32), rank r.
std::vector<HandTensor> w_pack_tensors(const ModelConfig& c, int64_t r, const std::string& dtype, uint64_t seed) {
  uint64_t state = seed;
  std::vector<HandTensor> out;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string base = module_name(l, "self_attn.W_pack");
    out.push_back({base + ".lora_A.weight", dtype, {r, c.hidden_size}, random_values(static_cast<size_t>(r * c.hidden_size), state, 0.3)});
    out.push_back({base + ".lora_B.weight", dtype, {3 * c.hidden_size, r},
                   random_values(static_cast<size_t>(3 * c.hidden_size * r), state, 0.3)});
  }
  return out;
}

nlohmann::json peft_config(int64_t r, double alpha, nlohmann::json targets) {
  return {{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", alpha}, {"target_modules", std::move(targets)}, {"bias", "none"},
          {"fan_in_fan_out", false}, {"modules_to_save", nullptr}, {"use_dora", false}, {"use_rslora", false}};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

ModelConfig config_of(const std::string& dir) { return open_checkpoint(dir).config; }

const std::vector<int32_t> kTokens = {1, 92, 1688, 2310, 31, 5, 77, 1200};

std::vector<float> logits_of(Model& m, int threads = 2) {
  ThreadPool pool(threads);
  m.set_kv_type(DType::F32);
  KvCache cache = m.new_cache(static_cast<int64_t>(kTokens.size()));
  ModelContext ctx;
  return m.forward_last(ctx, cache, kTokens, pool);
}

std::vector<float> lora_logits(const std::string& base, const std::vector<ScaledLoraAdapter>& adapters, int threads = 2) {
  auto m = load_model(base);
  m->attach_lora(std::make_shared<const LoraDeltas>(adapters, m->config(), m->checkpoint().qk_interleaved));
  return logits_of(*m, threads);
}

// max |a - b| / max |b|
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// The base checkpoint with W += user_scale * scale * B A for every module of every adapter, computed
// in double, written as a plain Hugging Face folder (F32 safetensors) under Hugging Face names.
std::string reference_folder(const std::string& base, const std::vector<ScaledLoraAdapter>& adapters, const std::string& name) {
  Checkpoint c = open_checkpoint(base);
  const ModelConfig& cfg = c.config;
  const int64_t H = cfg.hidden_size;
  std::map<std::string, std::vector<double>> weights;  // HF name -> row-major values
  std::map<std::string, std::vector<int64_t>> shapes;
  auto floats = [&](const std::string& canonical) {
    const Tensor& t = c.tensor(canonical);
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
    std::vector<double> v(static_cast<size_t>(rows * cols));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      load_row(t, r, row.data());
      std::copy(row.begin(), row.end(), v.begin() + r * cols);
    }
    return v;
  };
  auto put = [&](const std::string& hf, std::vector<double> v, std::vector<int64_t> shape) {
    weights[hf] = std::move(v);
    shapes[hf] = std::move(shape);
  };
  put("model.embed_tokens.weight", floats("token_embd.weight"), {cfg.vocab_size, H});
  put("model.norm.weight", floats("output_norm.weight"), {H});
  put("lm_head.weight", floats("output.weight"), {cfg.vocab_size, H});
  const std::map<std::string, std::pair<std::string, LoraTarget>> mats = {
      {"attn_output", {"self_attn.o_proj", LoraTarget::OProj}}, {"ffn_gate", {"mlp.gate_proj", LoraTarget::GateProj}},
      {"ffn_up", {"mlp.up_proj", LoraTarget::UpProj}},          {"ffn_down", {"mlp.down_proj", LoraTarget::DownProj}}};
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    put(p + "input_layernorm.weight", floats(layer_tensor(l, "attn_norm")), {H});
    put(p + "post_attention_layernorm.weight", floats(layer_tensor(l, "ffn_norm")), {H});
    std::vector<double> w_pack;  // the official fused q|k|v rows
    for (const char* role : {"attn_q", "attn_k", "attn_v"}) {
      auto v = floats(layer_tensor(l, role));
      w_pack.insert(w_pack.end(), v.begin(), v.end());
    }
    put(p + "self_attn.W_pack.weight", std::move(w_pack), {3 * H, H});
    for (const auto& [role, hf] : mats) {
      const Tensor& t = c.tensor(layer_tensor(l, role));
      put(p + hf.first + ".weight", floats(layer_tensor(l, role)), t.shape);
    }
  }
  for (const auto& [adapter, user_scale] : adapters)
    for (const LoraModule& m : adapter.modules) {
      const std::string hf = "model.layers." + std::to_string(m.layer) + "." +
                             (m.target == LoraTarget::WPack || m.target == LoraTarget::OProj ? "self_attn." : "mlp.") +
                             lora_target_name(m.target) + ".weight";
      auto& w = weights.at(hf);
      const int64_t out = shapes.at(hf)[0], in = shapes.at(hf)[1];
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double sum = 0;
          for (int64_t k = 0; k < m.rank; ++k)
            sum += static_cast<double>(m.b[static_cast<size_t>(o * m.rank + k)]) * m.a[static_cast<size_t>(k * in + i)];
          w[static_cast<size_t>(o * in + i)] += static_cast<double>(user_scale) * m.scale * sum;
        }
    }
  const std::string dir = temp(name);
  fs::create_directories(dir);
  std::vector<std::vector<float>> storage;
  std::vector<Tensor> tensors;
  storage.reserve(weights.size());
  for (const auto& [hf, v] : weights) {
    storage.emplace_back(v.begin(), v.end());
    Tensor t;
    t.name = hf;
    t.dtype = DType::F32;
    t.shape = shapes.at(hf);
    t.data = reinterpret_cast<const std::byte*>(storage.back().data());
    t.nbytes = storage.back().size() * 4;
    tensors.push_back(t);
  }
  formats::write_safetensors(dir + "/model.safetensors", tensors);
  for (const char* f : {"config.json", "tokenizer.model", "generation_config.json"})
    fs::copy_file(base + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  return dir;
}

void expect_same_modules(const LoraAdapter& got, const LoraAdapter& want, double tolerance) {
  ASSERT_EQ(got.modules.size(), want.modules.size());
  for (size_t i = 0; i < got.modules.size(); ++i) {
    const auto &g = got.modules[i], &w = want.modules[i];
    EXPECT_EQ(g.layer, w.layer);
    EXPECT_EQ(g.target, w.target);
    EXPECT_EQ(g.rank, w.rank);
    EXPECT_FLOAT_EQ(g.scale, w.scale);
    ASSERT_EQ(g.a.size(), w.a.size());
    ASSERT_EQ(g.b.size(), w.b.size());
    for (size_t k = 0; k < g.a.size(); ++k) ASSERT_NEAR(g.a[k], w.a[k], tolerance * std::abs(w.a[k])) << k;
    for (size_t k = 0; k < g.b.size(); ++k) ASSERT_NEAR(g.b[k], w.b[k], tolerance * std::abs(w.b[k])) << k;
  }
}

class LoraAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(tiny("b2-7b-tiny/model.safetensors"));
    REQUIRE_SHARED(tiny("b2-13b-tiny/pytorch_model.bin.index.json"));
  }
};

TEST_F(LoraAdapterTest, PeftFolderRoundTripsExactly) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const LoraAdapter a = random_adapter(c, kAllTargets, 4, 8, 1);
  const std::string dir = temp("peft_roundtrip");
  write_peft_adapter(dir, a);
  const LoraAdapter back = read_lora_adapter(dir, c);
  expect_same_modules(back, a, 0);
  EXPECT_EQ(back.config.r, 4);
  EXPECT_EQ(back.config.lora_alpha, 8);
  EXPECT_DOUBLE_EQ(back.config.lora_dropout, 0.05);
  EXPECT_EQ(back.config.base_model_name_or_path, "b2-tiny");
  // Any of the folder's files names the adapter.
  expect_same_modules(read_lora_adapter(dir + "/adapter_config.json", c), a, 0);
  expect_same_modules(read_lora_adapter(dir + "/adapter_model.safetensors", c), a, 0);
}

TEST_F(LoraAdapterTest, AdaptersOnSomeLayersRoundTripThroughModulePaths) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  LoraAdapter a = random_adapter(c, {LoraTarget::WPack, LoraTarget::UpProj}, 2, 4, 15);
  a.num_layers = c.num_layers;
  std::erase_if(a.modules, [](const LoraModule& m) { return m.layer == 0 && m.target == LoraTarget::UpProj; });
  const std::string dir = temp("partial");
  write_peft_adapter(dir, a);
  const auto j = nlohmann::json::parse(read_text_file(dir + "/adapter_config.json"));
  EXPECT_EQ(j["target_modules"], nlohmann::json({"W_pack", "model.layers.1.mlp.up_proj"}));
  expect_same_modules(read_lora_adapter(dir, c), a, 0);
  // Only the last layer adapted, the model's layer count known: W_pack is named by its path too.
  std::erase_if(a.modules, [](const LoraModule& m) { return m.layer == 0; });
  write_peft_adapter(dir, a);
  expect_same_modules(read_lora_adapter(dir, c), a, 0);
}

TEST_F(LoraAdapterTest, PeftFilesAreWrittenAsPeftWritesThem) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const std::string dir = temp("peft_layout");
  write_peft_adapter(dir, random_adapter(c, {LoraTarget::WPack}, 1, 32, 2));
  const std::string text = read_text_file(dir + "/adapter_config.json");
  // json.dumps(indent=2, sort_keys=True): two-space indent, sorted keys, ", " never at line ends.
  EXPECT_EQ(text.substr(0, 24), "{\n  \"alpha_pattern\": {},");
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["inference_mode"], true);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 1);
  EXPECT_EQ(j["lora_alpha"], 32);
  EXPECT_TRUE(j["lora_alpha"].is_number_integer());
  EXPECT_EQ(j["target_modules"], nlohmann::json::array({"W_pack"}));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_TRUE(j["modules_to_save"].is_null());
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  size_t last = 0;
  for (const auto& k : keys) {  // keys appear in the text in sorted order
    const size_t at = text.find("\n  \"" + k + "\":");
    ASSERT_NE(at, std::string::npos) << k;
    EXPECT_GT(at, last) << k;
    last = at;
  }
  // safetensors: metadata {"format": "pt"} and PEFT's tensor names and shapes.
  const std::string st = read_text_file(dir + "/adapter_model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, st.data(), 8);
  const auto header = nlohmann::json::parse(st.substr(8, n));
  EXPECT_EQ(header["__metadata__"], nlohmann::json({{"format", "pt"}}));
  EXPECT_EQ(header["base_model.model.model.layers.1.self_attn.W_pack.lora_A.weight"]["shape"], nlohmann::json({1, 32}));
  EXPECT_EQ(header["base_model.model.model.layers.1.self_attn.W_pack.lora_B.weight"]["shape"], nlohmann::json({96, 1}));
  EXPECT_EQ(header.size(), 1u + 2 * c.num_layers);
}

TEST_F(LoraAdapterTest, GgufLoraAdapterSplitsWPackAsLlamaCppAndReadsBackTheSameMatrices) {
  for (const char* model : {"b2-7b-tiny", "b2-13b-tiny"}) {
    SCOPED_TRACE(model);
    const ModelConfig c = config_of(tiny(model));
    const std::string peft = temp(std::string("gguf_src_") + model);
    write_peft_adapter(peft, random_adapter(c, kAllTargets, 3, 6, 3));
    const LoraAdapter a = read_lora_adapter(peft, c);
    const std::string file = temp(std::string("adapter_") + model + ".gguf");
    write_gguf_lora_adapter(file, a, c, DType::F32);
    expect_same_modules(read_lora_adapter(file, c), a, 0);

    // The file itself, read with the plain GGUF reader.
    gguf::File f = gguf::read_file(file);
    EXPECT_EQ(f.get("general.type").as_string("k"), "adapter");
    EXPECT_EQ(f.get("adapter.type").as_string("k"), "lora");
    EXPECT_EQ(f.get("general.architecture").as_string("k"), "baichuan");
    EXPECT_FLOAT_EQ(static_cast<float>(f.get("adapter.lora.alpha").as_float("k")), 6.0f);
    std::map<std::string, const Tensor*> by_name;
    for (const auto& t : f.tensors) by_name[t.name] = &t;
    EXPECT_EQ(by_name.size(), static_cast<size_t>(c.num_layers) * 7 * 2);
    const LoraModule& w = *a.find(1, LoraTarget::WPack);
    const int64_t H = c.hidden_size, d = c.head_dim(), r = w.rank;
    auto value = [](const Tensor* t, int64_t i) { return load_float(t->dtype, t->data, static_cast<size_t>(i)); };
    for (const char* role : {"attn_q", "attn_k", "attn_v"}) {
      const Tensor* ta = by_name.at(std::string("blk.1.") + role + ".weight.lora_a");
      const Tensor* tb = by_name.at(std::string("blk.1.") + role + ".weight.lora_b");
      EXPECT_EQ(ta->shape, (std::vector<int64_t>{r, H}));
      EXPECT_EQ(tb->shape, (std::vector<int64_t>{H, r}));
      for (int64_t i = 0; i < r * H; ++i) ASSERT_EQ(value(ta, i), w.a[static_cast<size_t>(i)]);  // A repeated
      const int64_t block = std::string(role) == "attn_q" ? 0 : std::string(role) == "attn_k" ? 1 : 2;
      // llama.cpp's permute for Q/K: per head, row 2i + j holds official row j * d/2 + i.
      for (int64_t head = 0; head < H / d; ++head)
        for (int64_t i = 0; i < d / 2; ++i)
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t file_row = head * d + 2 * i + j;
            const int64_t official = block == 2 ? file_row : head * d + j * (d / 2) + i;
            for (int64_t k = 0; k < r; ++k)
              ASSERT_EQ(value(tb, file_row * r + k), w.b[static_cast<size_t>((block * H + official) * r + k)]);
          }
    }
    // F16 keeps the matrices to F16's precision.
    write_gguf_lora_adapter(file, a, c, DType::F16);
    expect_same_modules(read_lora_adapter(file, c), a, 1e-3);
  }
}

TEST_F(LoraAdapterTest, UnmergedAdaptersMatchTheReferenceWeights) {
  for (const char* model : {"b2-7b-tiny", "b2-13b-tiny"}) {
    SCOPED_TRACE(model);
    const std::string base = tiny(model);
    const ModelConfig c = config_of(base);
    // Two adapters, one scaled by the user: the deltas add up.
    std::vector<ScaledLoraAdapter> adapters = {{random_adapter(c, kAllTargets, 4, 8, 10), 1.0f},
                                               {random_adapter(c, {LoraTarget::WPack, LoraTarget::DownProj}, 2, 5, 11, true), 0.5f}};
    const auto reference = logits_of(*load_model(reference_folder(base, adapters, std::string("ref_") + model)));
    const auto base_logits = logits_of(*load_model(base));
    const auto got = lora_logits(base, adapters);
    EXPECT_LT(relative_error(got, reference), 1e-5);
    EXPECT_GT(relative_error(base_logits, reference), 1e-2);  // the adapters do change the model
    EXPECT_EQ(got, lora_logits(base, adapters, 1));  // the thread count does not change results
  }
}

TEST_F(LoraAdapterTest, UnmergedAdapterOnAGgufBaseMatchesTheReference) {
  // GGUF bases keep Q/K rows permuted: the adapter's rows must be permuted the same way, whether it
  // comes from a PEFT folder or a GGUF LoRA file.
  const std::string base = tiny("b2-7b-tiny");
  const ModelConfig c = config_of(base);
  ConvertOptions o;
  o.type = DType::F32;
  const std::string gguf_base = temp("base.gguf");
  write_gguf_checkpoint(open_checkpoint(base), gguf_base, o);
  LoraAdapter a = random_adapter(c, kAllTargets, 4, 8, 20);
  const auto reference = logits_of(*load_model(reference_folder(base, {{a, 1.0f}}, "ref_gguf")));
  EXPECT_LT(relative_error(lora_logits(gguf_base, {{a, 1.0f}}), reference), 1e-5);
  const std::string file = temp("on_gguf.gguf");
  write_gguf_lora_adapter(file, a, c);
  EXPECT_LT(relative_error(lora_logits(gguf_base, {{read_lora_adapter(file, c), 1.0f}}), reference), 1e-5);
}

TEST_F(LoraAdapterTest, RankAndAlphaPatternsAndRsLoraSetEachModulesScale) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  uint64_t state = 5;
  auto pair = [&](int64_t layer, const std::string& module, int64_t r, int64_t out, int64_t in) {
    return std::vector<HandTensor>{
        {module_name(layer, module) + ".lora_A.weight", "F32", {r, in}, random_values(static_cast<size_t>(r * in), state, 0.3)},
        {module_name(layer, module) + ".lora_B.weight", "F32", {out, r}, random_values(static_cast<size_t>(out * r), state, 0.3)}};
  };
  std::vector<HandTensor> tensors;
  for (int64_t l = 0; l < 2; ++l) {
    for (auto& t : pair(l, "self_attn.W_pack", l == 1 ? 2 : 4, 96, 32)) tensors.push_back(t);
    for (auto& t : pair(l, "mlp.up_proj", 4, 88, 32)) tensors.push_back(t);
  }
  auto cfg = peft_config(4, 16, {"W_pack", "up_proj"});
  cfg["rank_pattern"] = {{"model.layers.1.self_attn.W_pack", 2}};
  cfg["alpha_pattern"] = {{"up_proj", 3}};
  LoraAdapter a = read_lora_adapter(hand_peft("patterns", cfg, tensors), c);
  ASSERT_EQ(a.modules.size(), 4u);
  EXPECT_FLOAT_EQ(a.find(0, LoraTarget::WPack)->scale, 16.0f / 4);
  EXPECT_EQ(a.find(1, LoraTarget::WPack)->rank, 2);
  EXPECT_FLOAT_EQ(a.find(1, LoraTarget::WPack)->scale, 16.0f / 2);
  EXPECT_FLOAT_EQ(a.find(0, LoraTarget::UpProj)->scale, 3.0f / 4);
  EXPECT_FLOAT_EQ(a.find(1, LoraTarget::UpProj)->scale, 3.0f / 4);

  cfg["use_rslora"] = true;
  a = read_lora_adapter(hand_peft("rslora", cfg, tensors), c);
  EXPECT_FLOAT_EQ(a.find(0, LoraTarget::WPack)->scale, static_cast<float>(16 / std::sqrt(4.0)));
  EXPECT_FLOAT_EQ(a.find(1, LoraTarget::WPack)->scale, static_cast<float>(16 / std::sqrt(2.0)));
  EXPECT_FLOAT_EQ(a.find(1, LoraTarget::UpProj)->scale, static_cast<float>(3 / std::sqrt(4.0)));

  // Written back, per-module ranks and alphas become patterns that read to the same scales; through
  // GGUF (one alpha), the scales are folded into B so the products stay the same.
  const std::string dir = temp("patterns_back");
  write_peft_adapter(dir, a);
  expect_same_modules(read_lora_adapter(dir, c), a, 0);
  const std::string file = temp("patterns.gguf");
  write_gguf_lora_adapter(file, a, c);
  const LoraAdapter g = read_lora_adapter(file, c);
  for (const LoraModule& m : a.modules) {
    const LoraModule& n = *g.find(m.layer, m.target);
    for (size_t i = 0; i < m.b.size(); ++i) ASSERT_NEAR(n.b[i] * n.scale, m.b[i] * m.scale, 1e-5 * std::abs(m.b[i] * m.scale) + 1e-7);
  }
}

TEST_F(LoraAdapterTest, ReadsF16AndBf16Tensors) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  for (const char* dtype : {"F16", "BF16"}) {
    SCOPED_TRACE(dtype);
    auto tensors = w_pack_tensors(c, 2, dtype, 7);
    const LoraAdapter a = read_lora_adapter(hand_peft(std::string("half_") + dtype, peft_config(2, 4, {"W_pack"}), tensors), c);
    const LoraModule& m = *a.find(1, LoraTarget::WPack);
    const auto& want_a = tensors[2].values;  // layer 1's A, then B
    for (size_t i = 0; i < want_a.size(); ++i) {
      const float rounded = std::string(dtype) == "F16" ? f16_to_f32(f32_to_f16(want_a[i])) : bf16_to_f32(f32_to_bf16(want_a[i]));
      ASSERT_EQ(m.a[i], rounded);
    }
  }
}

TEST_F(LoraAdapterTest, RegexTargetsAndLayersToTransformSelectModules) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  auto tensors = w_pack_tensors(c, 2, "F32", 8);
  std::vector<HandTensor> layer1(tensors.begin() + 2, tensors.end());
  auto cfg = peft_config(2, 4, R"(.*\.self_attn\.W_pack)");
  EXPECT_EQ(read_lora_adapter(hand_peft("regex", cfg, tensors), c).modules.size(), 2u);
  cfg["layers_to_transform"] = {1};
  const LoraAdapter a = read_lora_adapter(hand_peft("layers", cfg, layer1), c);
  ASSERT_EQ(a.modules.size(), 1u);
  EXPECT_EQ(a.modules[0].layer, 1);
  // A regex that does not match this model's names is an adapter for another model.
  cfg = peft_config(2, 4, R"(.*\.q_proj)");
  EXPECT_NE(error_of([&] { read_lora_adapter(hand_peft("regex_other", cfg, tensors), c); }).find("does not target"),
            std::string::npos);
}

TEST_F(LoraAdapterTest, RefusesConfigurationsItCannotApplyNamingTheField) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const auto tensors = w_pack_tensors(c, 2, "F32", 9);
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> cases = {
      {"use_dora", true, "DoRA"},
      {"modules_to_save", {"lm_head"}, "modules_to_save"},
      {"bias", "all", "bias"},
      {"lora_bias", true, "lora_bias"},
      {"fan_in_fan_out", true, "fan_in_fan_out"},
      {"target_modules", {"W_pack", "embed_tokens"}, "embed_tokens"},
      {"target_modules", {"W_pack", "q_proj"}, "q_proj"},
      {"target_modules", nullptr, "target_modules' is missing"},
      {"r", 0, "'r'"},
      {"peft_type", "IA3", "peft_type"},
      {"rank_pattern", {{"W_pack", "x"}}, "rank_pattern"},
  };
  for (const auto& [field, value, expected] : cases) {
    SCOPED_TRACE(field);
    auto cfg = peft_config(2, 4, {"W_pack"});
    cfg[field] = value;
    const std::string dir = hand_peft("refuse_" + field, cfg, tensors);
    const std::string message = error_of([&] { read_lora_adapter(dir, c); });
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_NE(message.find("adapter_config.json"), std::string::npos) << message;
  }
}

TEST_F(LoraAdapterTest, RefusesTensorsThatDoNotFitNamingTheTensor) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const auto good = w_pack_tensors(c, 2, "F32", 12);
  const auto cfg = peft_config(2, 4, {"W_pack"});
  auto with = [&](const std::string& name, std::function<void(std::vector<HandTensor>&)> edit) {
    auto t = good;
    edit(t);
    const std::string dir = hand_peft(name, cfg, t);
    return error_of([&] { read_lora_adapter(dir, c); });
  };
  std::string m = with("shape", [](auto& t) { t[1].shape = {95, 2}, t[1].values.resize(190); });
  EXPECT_NE(m.find("layers.0.self_attn.W_pack.lora_B.weight' has shape [95, 2], expected [96, 2]"), std::string::npos) << m;
  m = with("rank", [](auto& t) { t[0].shape = {3, 32}, t[0].values.resize(96); });
  EXPECT_NE(m.find("has shape [3, 32], expected [2, 32]"), std::string::npos) << m;
  m = with("missing_b", [](auto& t) { t.erase(t.begin() + 3); });
  EXPECT_NE(m.find("layers.1.self_attn.W_pack.lora_B.weight' is missing"), std::string::npos) << m;
  m = with("missing_layer", [](auto& t) { t.erase(t.begin(), t.begin() + 2); });
  EXPECT_NE(m.find("layers.0.self_attn.W_pack.lora_A.weight' is missing"), std::string::npos) << m;
  m = with("lm_head", [](auto& t) { t.push_back({"base_model.model.lm_head.lora_A.weight", "F32", {2, 32}, std::vector<float>(64)}); });
  EXPECT_NE(m.find("lm_head"), std::string::npos) << m;
  m = with("embedding", [](auto& t) {
    t.push_back({"base_model.model.model.embed_tokens.lora_embedding_A", "F32", {2, 32}, std::vector<float>(64)});
  });
  EXPECT_NE(m.find("embedding"), std::string::npos) << m;
  m = with("untargeted", [](auto& t) {
    t.push_back({module_name(0, "mlp.up_proj") + ".lora_A.weight", "F32", {2, 32}, std::vector<float>(64)});
  });
  EXPECT_NE(m.find("does not target"), std::string::npos) << m;
  m = with("unknown", [](auto& t) {
    t.push_back({module_name(0, "self_attn.q_proj") + ".lora_A.weight", "F32", {2, 32}, std::vector<float>(64)});
  });
  EXPECT_NE(m.find("q_proj"), std::string::npos) << m;
  m = with("dora", [](auto& t) {
    t.push_back({module_name(0, "self_attn.W_pack") + ".lora_magnitude_vector", "F32", {96}, std::vector<float>(96)});
  });
  EXPECT_NE(m.find("DoRA"), std::string::npos) << m;
  m = with("nan", [](auto& t) { t[2].values[5] = std::nanf(""); });
  EXPECT_NE(m.find("non-finite"), std::string::npos) << m;
  m = with("layer", [](auto& t) {
    for (auto& x : t)
      if (auto at = x.name.find("layers.1."); at != std::string::npos) x.name.replace(at, 9, "layers.7.");
  });
  EXPECT_NE(m.find("layer 7"), std::string::npos) << m;
}

TEST_F(LoraAdapterTest, TruncatedOrCorruptedFilesGiveClearErrors) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const std::string dir = temp("corrupt_src");
  const LoraAdapter a = random_adapter(c, {LoraTarget::WPack, LoraTarget::OProj}, 2, 4, 13);
  write_peft_adapter(dir, a);
  const std::string st = read_text_file(dir + "/adapter_model.safetensors");
  const std::string config = read_text_file(dir + "/adapter_config.json");
  const std::string gguf_file = temp("corrupt.gguf");
  write_gguf_lora_adapter(gguf_file, a, c);
  const std::string gguf_bytes = read_text_file(gguf_file);
  const std::string broken = temp("corrupt");
  fs::create_directories(broken);
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, st.size() / 2, st.size() - 1}) {
    SCOPED_TRACE(cut);
    write_text(broken + "/adapter_config.json", config);
    write_text(broken + "/adapter_model.safetensors", st.substr(0, cut));
    const std::string m = error_of([&] { read_lora_adapter(broken, c); });
    EXPECT_NE(m.find("adapter_model.safetensors"), std::string::npos) << m;
  }
  write_text(broken + "/adapter_model.safetensors", st);
  write_text(broken + "/adapter_config.json", config.substr(0, config.size() / 2));
  std::string m = error_of([&] { read_lora_adapter(broken, c); });
  EXPECT_NE(m.find("adapter_config.json: invalid JSON"), std::string::npos) << m;
  fs::remove(broken + "/adapter_model.safetensors");
  m = error_of([&] { read_lora_adapter(broken, c); });
  EXPECT_NE(m.find("neither adapter_model.safetensors nor adapter_model.bin"), std::string::npos) << m;
  m = error_of([&] { read_lora_adapter(temp("no_such_adapter"), c); });
  EXPECT_NE(m.find("no such file"), std::string::npos) << m;
  for (size_t cut : {size_t{3}, size_t{40}, gguf_bytes.size() / 2, gguf_bytes.size() - 1}) {
    SCOPED_TRACE(cut);
    write_text(broken + ".gguf", gguf_bytes.substr(0, cut));
    m = error_of([&] { read_lora_adapter(broken + ".gguf", c); });
    EXPECT_NE(m.find(broken + ".gguf"), std::string::npos) << m;
  }
}

TEST_F(LoraAdapterTest, GgufAdaptersOfAnotherKindOrModelAreRefused) {
  const ModelConfig c = config_of(tiny("b2-7b-tiny"));
  const ModelConfig c13 = config_of(tiny("b2-13b-tiny"));
  const LoraAdapter a = random_adapter(c, {LoraTarget::WPack}, 2, 4, 14);
  const std::string file = temp("kind.gguf");
  write_gguf_lora_adapter(file, a, c);
  gguf::File f = gguf::read_file(file);
  auto rewrite = [&](const std::string& key, gguf::Value v) {
    auto meta = f.metadata;
    for (auto& kv : meta)
      if (kv.key == key) kv.value = v;
    std::vector<gguf::TensorToWrite> tensors;
    for (const Tensor& t : f.tensors)
      tensors.push_back({t.name, t.dtype, t.shape, [&t](std::byte* out, size_t n) { std::memcpy(out, t.data, n); }});
    const std::string out = temp("kind_" + key + ".gguf");
    gguf::write_file(out, meta, tensors);
    return error_of([&] { read_lora_adapter(out, c); });
  };
  EXPECT_NE(rewrite("general.type", gguf::Value::str("model")).find("general.type is 'model', expected 'adapter'"), std::string::npos);
  EXPECT_NE(rewrite("general.architecture", gguf::Value::str("llama")).find("general.architecture is 'llama'"), std::string::npos);
  EXPECT_NE(rewrite("adapter.type", gguf::Value::str("prompt")).find("adapter.type"), std::string::npos);
  // An adapter for another shape of model.
  const std::string m = error_of([&] { read_lora_adapter(file, c13); });
  EXPECT_NE(m.find("has shape"), std::string::npos) << m;
}

}  // namespace lora_adapter_test
}  // namespace baichuan
