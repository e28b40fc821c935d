// baichuan init: a GGUF with random weights of any Baichuan 2 shape, for tests, benchmarks and the
// first-run demo. Written streaming and in parallel; the same seed gives the same file.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/gguf_checkpoint.h"

#ifndef BAICHUAN_MODELS_DIR
#define BAICHUAN_MODELS_DIR "models"
#endif

namespace baichuan::cli {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// An approximately normal N(0, 1) value: the sum of four 16-bit uniforms, centred and scaled
// (Irwin-Hall); plenty for random test weights and much faster than exact methods.
float approx_normal(uint64_t& state) {
  uint64_t r = splitmix64(state);
  float sum = 0;
  for (int i = 0; i < 4; ++i) sum += static_cast<float>((r >> (16 * i)) & 0xffff) / 65535.0f;
  return (sum - 2.0f) * std::sqrt(3.0f);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

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

}  // namespace

Run add_init(CLI::App& app) {
  struct Command {
    std::string config, preset, out, type = "f16", tokenizer, position, generation_config;
    uint64_t seed = 1;
    float stddev = 0.02f;
    int threads = 0;
  };
  auto cmd = std::make_shared<Command>();
  auto* c = app.add_option("--config", cmd->config, "A Hugging Face config.json giving the shape");
  auto* p = app.add_option("--preset", cmd->preset, "A known shape: 7b, 13b or tiny")
                ->check(CLI::IsMember({"7b", "13b", "tiny"}));
  c->excludes(p);
  app.add_option("-o,--output", cmd->out, "Output .gguf file")->required();
  app.add_option("--type", cmd->type, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1")->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}));
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model (default: the bundled Baichuan 2 tokenizer)");
  app.add_option("--generation-config", cmd->generation_config, "generation_config.json to embed");
  app.add_option("--position", cmd->position, "Force rope or alibi")->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("--seed", cmd->seed, "Random seed");
  app.add_option("--std", cmd->stddev, "Standard deviation of the matrices");
  app.add_option("-t,--threads", cmd->threads, "Threads");
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
    DType type = parse_float_type(cmd->type);
    ThreadPool pool(cmd->threads > 0 ? cmd->threads : ThreadPool::default_threads());

    std::vector<gguf::TensorToWrite> tensors;
    for (const auto& [name, shape] : canonical_tensors(cfg)) {
      gguf::TensorToWrite t;
      t.name = name;
      t.shape = shape;
      bool is_matrix = shape.size() == 2;
      t.dtype = is_matrix ? matrix_type_for(type, shape[1]) : DType::F32;
      uint64_t seed = cmd->seed ^ hash_name(name);
      float stddev = cmd->stddev;
      t.produce = [shape, is_matrix, seed, stddev, &pool, dtype = t.dtype, name](std::byte* out, size_t) {
        int64_t rows = is_matrix ? shape[0] : 1, cols = shape.back();
        size_t row_bytes = bytes_for(dtype, cols, name);
        pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t r = begin; r < end; ++r) {
            uint64_t state = seed + static_cast<uint64_t>(r) * 0x2545f4914f6cdd1dULL;
            for (auto& v : row) v = is_matrix ? stddev * approx_normal(state) : 1.0f;  // norms start at one
            store_floats(dtype, row.data(), cols, out + static_cast<size_t>(r) * row_bytes);
          }
        });
      };
      tensors.push_back(std::move(t));
    }
    std::string name = cmd->preset.empty() ? "Baichuan2-random" : "Baichuan2-" + cmd->preset + "-random";
    gguf::write_file(cmd->out, gguf_metadata(cfg, tokenizer, gen, type, name), tensors);
    std::cerr << "wrote " << cmd->out << ": random Baichuan 2 " << cfg.family() << ", " << cfg.num_layers
              << " layers, hidden " << cfg.hidden_size << ", " << cmd->type << " ("
              << std::filesystem::file_size(cmd->out) << " bytes)\n";
    return 0;
  };
}

}  // namespace baichuan::cli
