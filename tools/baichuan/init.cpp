// baichuan init: a GGUF with random weights of any Baichuan 2 shape, for tests, benchmarks and the
// first-run demo. Written streaming and in parallel; the same seed gives the same file.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "common.h"
#include "progress.h"
#include "convert/random_init.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/splitmix64.h"
#include "core/atomic_file.h"
#include "formats/bnb_nf4.h"
#include "model/gguf_checkpoint.h"
#include "train/hf_export.h"
#include "quant/blocks.h"
#include "quant/type_traits.h"

#ifndef BAICHUAN_MODELS_DIR
#define BAICHUAN_MODELS_DIR "models"
#endif

namespace baichuan::cli {

namespace {

ModelConfig preset(const std::string& name) {
  ModelConfig c;
  c.vocab_size = 125696;
  if (name == "7b") {
    c.hidden_size = 4096, c.intermediate_size = 11008, c.num_heads = 32, c.num_layers = 32;
  } else if (name == "13b") {
    c.hidden_size = 5120, c.intermediate_size = 13696, c.num_heads = 40, c.num_layers = 40;
    c.position = PositionEncoding::Alibi;
  } else if (name == "tiny") {
    c.hidden_size = 64, c.intermediate_size = 176, c.num_heads = 4, c.num_layers = 2;
  } else {
    fail("unknown --preset '", name, "' (expected 7b, 13b or tiny)");
  }
  return c;
}

std::string default_generation_json() {
  GenerationConfig g;
  nlohmann::json j = {{"pad_token_id", 0},         {"bos_token_id", 1},
                      {"eos_token_id", 2},         {"user_token_id", g.user_token_id},
                      {"assistant_token_id", g.assistant_token_id}, {"max_new_tokens", g.max_new_tokens},
                      {"temperature", g.temperature}, {"top_k", g.top_k},
                      {"top_p", g.top_p},          {"repetition_penalty", g.repetition_penalty},
                      {"do_sample", g.do_sample}};
  return j.dump(2);
}

// A random folder in the layout of the official 4-bit Chat releases (formats/bnb_nf4.h): config.json,
// generation_config.json, tokenizer.model, pytorch_model.bin with the five linears of every layer in
// NF4 (uniform random codes; block scales from uniform random qabsmax codes through a linear code2,
// absmax in [std, 3 std], so the weights' spread is about `stddev`) and the rest float16.
void write_random_bnb_nf4_folder(const std::string& dir, const ModelConfig& cfg, const std::string& tokenizer_path,
                                 const std::string& generation_json, uint64_t seed, float stddev) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  auto write_text = [&](const std::string& name, const std::string& text) {
    AtomicFile f((fs::path(dir) / name).string());
    f.write(text);
    f.commit();
  };
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(train::hf_config_json(cfg));
  config["torch_dtype"] = "float16";
  config["quantization_config"] = {{"bnb_4bit_compute_dtype", "bfloat16"}, {"bnb_4bit_quant_type", "nf4"},
                                   {"bnb_4bit_use_double_quant", true},    {"load_in_4bit", true},
                                   {"load_in_8bit", false}};
  write_text("config.json", config.dump(2) + "\n");
  write_text("generation_config.json", generation_json);
  write_text("tokenizer.model", read_text_file(tokenizer_path));

  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  std::vector<formats::Bnb4bitTensorToWrite> tensors;
  auto add_f16 = [&](const std::string& name, std::vector<int64_t> shape, bool ones) {
    formats::Bnb4bitTensorToWrite t;
    t.name = name;
    t.shape = std::move(shape);
    const uint64_t base = seed ^ hash_name(name);
    t.produce = [base, ones, stddev](std::byte* out, size_t first, size_t n) {  // whole halves: chunks are even
      for (size_t i = 0; i < n / 2; ++i) {
        uint64_t state = base + (first / 2 + i) * 0x2545f4914f6cdd1dULL;
        const uint16_t h = f32_to_f16(ones ? 1.0f : stddev * approx_normal(state));
        std::memcpy(out + 2 * i, &h, 2);
      }
    };
    tensors.push_back(std::move(t));
  };
  auto add_nf4 = [&](const std::string& name, std::vector<int64_t> shape) {
    formats::Bnb4bitTensorToWrite t;
    t.name = name;
    t.shape = std::move(shape);
    t.four_bit = true;
    const uint64_t base = seed ^ hash_name(name);
    t.produce = [base](std::byte* out, size_t first, size_t n) { fill_random_bytes(base, out, first, n); };
    t.block_codes = [base](std::byte* out, size_t first, size_t n) { fill_random_bytes(~base, out, first, n); };
    const int64_t blocks = (t.shape[0] * t.shape[1] + 63) / 64;
    t.absmax2.assign(static_cast<size_t>((blocks + 255) / 256), 2 * stddev);
    t.offset = stddev;
    tensors.push_back(std::move(t));
  };
  add_f16("model.embed_tokens.weight", {V, H}, false);
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_nf4(p + "self_attn.W_pack.weight", {3 * H, H});
    add_nf4(p + "self_attn.o_proj.weight", {H, H});
    add_nf4(p + "mlp.gate_proj.weight", {I, H});
    add_nf4(p + "mlp.down_proj.weight", {H, I});
    add_nf4(p + "mlp.up_proj.weight", {I, H});
    add_f16(p + "input_layernorm.weight", {H}, true);
    add_f16(p + "post_attention_layernorm.weight", {H}, true);
  }
  add_f16("model.norm.weight", {H}, true);
  add_f16("lm_head.weight", {V, H}, false);
  std::vector<float> code2(256);
  for (size_t k = 0; k < 256; ++k) code2[k] = static_cast<float>(k + 1) / 256.0f;  // absmax in (offset, offset + absmax2]
  formats::write_bnb_nf4_bin((fs::path(dir) / "pytorch_model.bin").string(), tensors, code2);
}

}  // namespace

Run add_init(CLI::App& app) {
  struct Command {
    std::string config, preset, out, type = "f16", tokenizer, position, generation_config, format = "gguf";
    uint64_t seed = 1;
    float stddev = 0.02f;
    int threads = 0;
  };
  auto cmd = std::make_shared<Command>();
  auto* c = app.add_option("--config", cmd->config, "A Hugging Face config.json giving the shape");
  auto* p = app.add_option("--preset", cmd->preset, "A known shape: 7b, 13b or tiny")
                ->check(CLI::IsMember({"7b", "13b", "tiny"}));
  c->excludes(p);
  app.add_option("-o,--output", cmd->out, "Output .gguf file (a folder with --format bnb-nf4)")->required();
  app.add_option("--format", cmd->format,
                 "gguf, or bnb-nf4: a folder in the layout of the official 4-bit Chat releases (NF4 linears, "
                 "the rest float16; --type does not apply)")
      ->check(CLI::IsMember({"gguf", "bnb-nf4"}));
  app.add_option("--type", cmd->type,
                 std::string("Type of the matrices: ") + file_type_names() +
                     " (as `baichuan quantize`; block types get random blocks directly)");
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model (default: the bundled Baichuan 2 tokenizer)");
  app.add_option("--generation-config", cmd->generation_config, "generation_config.json to embed");
  app.add_option("--position", cmd->position, "Force rope or alibi")->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("--seed", cmd->seed, "Random seed");
  app.add_option("--std", cmd->stddev, "Standard deviation of the matrices");
  app.add_option("-t,--threads", cmd->threads, "Threads (default: all hardware threads)")->check(thread_count_check());
  return [cmd] {
    if (cmd->config.empty() && cmd->preset.empty()) fail("give --config config.json or --preset 7b|13b|tiny");
    auto position = cmd->position.empty() ? std::nullopt : parse_position_encoding(cmd->position);
    ModelConfig cfg = cmd->config.empty() ? preset(cmd->preset)
                                          : parse_model_config(read_text_file(cmd->config), cmd->config, position);
    if (position) cfg.position = *position;
    cfg.validate(cmd->config.empty() ? "--preset " + cmd->preset : cmd->config);
    std::string tok_path = cmd->tokenizer.empty() ? std::string(BAICHUAN_MODELS_DIR) + "/tokenizer.model" : cmd->tokenizer;
    Tokenizer tokenizer = Tokenizer::from_file(tok_path);
    if (tokenizer.vocab_size() != cfg.vocab_size)
      fail(tok_path, ": the tokenizer has ", tokenizer.vocab_size(), " pieces but vocab_size is ", cfg.vocab_size);
    std::string gen = cmd->generation_config.empty() ? default_generation_json() : read_text_file(cmd->generation_config);
    if (!cmd->generation_config.empty()) parse_generation_config(gen, cmd->generation_config);
    if (cmd->format == "bnb-nf4") {
      auto start = std::chrono::steady_clock::now();
      write_random_bnb_nf4_folder(cmd->out, cfg, tok_path, gen, cmd->seed, cmd->stddev);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << "wrote " << cmd->out << ": random Baichuan 2 " << cfg.family() << " in the 4-bit (NF4) layout, "
                << cfg.num_layers << " layers, hidden " << cfg.hidden_size << " ("
                << std::filesystem::file_size(std::filesystem::path(cmd->out) / "pytorch_model.bin") << " bytes) in "
                << strprintf("%.2f", secs) << " s\n";
      return 0;
    }
    FileType type = parse_file_type(cmd->type);
    ThreadPool pool(ThreadPool::threads_for_request(cmd->threads));

    RandomGgufOptions options;
    options.type = type;
    options.seed = cmd->seed;
    options.stddev = cmd->stddev;
    options.name = cmd->preset.empty() ? "Baichuan2-random" : "Baichuan2-" + cmd->preset + "-random";
    auto start = std::chrono::steady_clock::now();
    write_random_gguf(cmd->out, cfg, tokenizer, gen, options, pool);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << "wrote " << cmd->out << ": random Baichuan 2 " << cfg.family() << ", " << cfg.num_layers
              << " layers, hidden " << cfg.hidden_size << ", " << file_type_name(type) << " ("
              << std::filesystem::file_size(cmd->out) << " bytes) in " << strprintf("%.2f", secs) << " s\n";
    return 0;
  };
}

}  // namespace baichuan::cli
