// Options and helpers shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "generate/sampling.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"

namespace baichuan::cli {

// -m and the options that say how to read it.
struct ModelOptions {
  std::string path;
  std::string config, tokenizer, position;
  int threads = 0;
  void add(CLI::App& app);
  LoadOptions load_options() const;
  std::unique_ptr<Model> load() const;  // logs what was loaded to stderr
  int thread_count() const { return threads > 0 ? threads : ThreadPool::default_threads(); }
};

// The prompt: raw text (-p), a text file (-f) or a conversation (--chat MESSAGES.json).
struct PromptOptions {
  std::string text, file, chat;
  void add(CLI::App& app);
  // Ids of the prompt; a conversation goes through the official chat template with the model's
  // model_max_length and generation_config max_new_tokens.
  std::vector<int32_t> ids(const Model& model) const;
};

// Sampling flags; unset ones take the model's generation_config.json defaults.
struct SamplingOptions {
  bool greedy = false;
  std::optional<float> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  void add(CLI::App& app);
  SamplingParams params(const GenerationConfig& defaults) const;
};

ChatTemplateConfig chat_template_config(const Model& model);
// The context for a prompt: --ctx if given, else max(model_max_length, 4096); throws if the prompt
// does not fit.
int64_t checked_context(const Model& model, int64_t ctx_flag, size_t prompt_tokens);
DType parse_float_type(const std::string& name);  // f32 | f16 | bf16
std::string json_ids(const std::vector<int32_t>& ids);  // "[1, 2, 3]"

}  // namespace baichuan::cli
