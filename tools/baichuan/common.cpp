#include "common.h"

#include <chrono>
#include <iostream>
#include <random>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/cpu.h"

namespace baichuan::cli {

void ModelOptions::add(CLI::App& app) {
  app.add_option("-m,--model", path, "Checkpoint: Hugging Face folder, MindSpore .ckpt, or .gguf")->required();
  app.add_option("--config", config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", position, "Force the position scheme: rope (7B family) or alibi (13B family)")
      ->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("-t,--threads", threads, "Threads (default: all hardware threads)")->check(CLI::NonNegativeNumber);
}

LoadOptions ModelOptions::load_options() const {
  LoadOptions o;
  if (!config.empty()) o.config_path = config;
  if (!tokenizer.empty()) o.tokenizer_path = tokenizer;
  if (!position.empty()) o.position = parse_position_encoding(position);
  return o;
}

std::unique_ptr<Model> ModelOptions::load() const {
  auto start = std::chrono::steady_clock::now();
  auto model = load_model(path, load_options());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto& c = model->config();
  std::cerr << "loaded " << path << " (" << model->checkpoint().description << "): Baichuan 2 " << c.family() << ", "
            << c.num_layers << " layers, hidden " << c.hidden_size << ", " << c.num_heads << " heads, vocab "
            << c.vocab_size << " in " << secs << " s; " << kernels::describe_cpu() << ", " << thread_count()
            << " threads\n";
  return model;
}

void PromptOptions::add(CLI::App& app) {
  auto* p = app.add_option("-p,--prompt", text, "Prompt text (used as is: no BOS, no template)");
  auto* f = app.add_option("-f,--file", file, "Read the prompt text from a file");
  auto* c = app.add_option("--chat", chat, "A conversation: JSON file [{\"role\":..., \"content\":...}, ...]");
  p->excludes(f)->excludes(c);
  f->excludes(c);
}

ChatTemplateConfig chat_template_config(const Model& model) {
  ChatTemplateConfig t;
  t.model_max_length = model.config().model_max_length;
  t.max_new_tokens = model.generation().max_new_tokens;
  t.user_token_id = model.generation().user_token_id;
  t.assistant_token_id = model.generation().assistant_token_id;
  return t;
}

int64_t checked_context(const Model& model, int64_t ctx_flag, size_t prompt_tokens) {
  int64_t context = ctx_flag > 0 ? ctx_flag : std::max<int64_t>(model.config().model_max_length, 4096);
  if (prompt_tokens == 0) fail("the prompt is empty");
  if (static_cast<int64_t>(prompt_tokens) > context)
    fail("the prompt has ", prompt_tokens, " tokens, more than the context of ", context, " (use --ctx)");
  return context;
}

std::vector<int32_t> PromptOptions::ids(const Model& model) const {
  if (!chat.empty())
    return build_chat_input(model.tokenizer(), parse_chat_messages(read_text_file(chat), chat), chat_template_config(model));
  if (!file.empty()) return model.tokenizer().encode(read_text_file(file));
  return model.tokenizer().encode(text);
}

void SamplingOptions::add(CLI::App& app) {
  app.add_flag("--greedy", greedy, "Greedy decoding (arg-max; no repetition penalty unless --repeat-penalty)");
  app.add_option("--temp,--temperature", temperature, "Sampling temperature");
  app.add_option("--top-k", top_k, "Keep the k most likely tokens (0 = off)");
  app.add_option("--top-p", top_p, "Nucleus sampling threshold (1 = off)");
  app.add_option("--repeat-penalty,--repetition-penalty", repetition_penalty, "Repetition penalty (1 = off)");
  app.add_option("--seed", seed, "Random seed for repeatable sampling");
}

SamplingParams SamplingOptions::params(const GenerationConfig& defaults) const {
  SamplingParams p = SamplingParams::from(defaults);
  if (greedy) {
    p.greedy = true;
    p.repetition_penalty = 1.0f;
  }
  if (temperature) p.temperature = *temperature;
  if (top_k) p.top_k = *top_k;
  if (top_p) p.top_p = *top_p;
  if (repetition_penalty) p.repetition_penalty = *repetition_penalty;
  p.seed = seed ? *seed : std::random_device{}();
  p.validate();
  return p;
}

DType parse_float_type(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  if (name == "q8_0") return DType::Q8_0;
  if (name == "q4_0") return DType::Q4_0;
  if (name == "q4_1") return DType::Q4_1;
  if (name == "q5_0") return DType::Q5_0;
  if (name == "q5_1") return DType::Q5_1;
  fail("unknown --type '", name, "' (expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1)");
}

std::string json_ids(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace baichuan::cli
