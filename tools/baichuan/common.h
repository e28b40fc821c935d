// Options and helpers shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convert/gguf_convert.h"
#include "core/thread_pool.h"
#include "generate/chat_prompt.h"
#include "generate/decoding.h"
#include "generate/sampling.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_apply.h"
#include "model/lora_option.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"

namespace baichuan::cli {

// Checks an integer option at parse time: at least `min` ("--ctx: must be at least 1, got 0").
CLI::Validator at_least(int64_t min);
// The same for a real number: above `floor`, or equal to it when `or_equal` ("--temp: must be at least 0,
// got -1"; CLI11's own range checks print the whole of DBL_MAX).
CLI::Validator number_above(double floor, bool or_equal);
// Checks a -t value at parse time (ThreadPool::threads_for_request: 0 = all, at most the hardware's).
CLI::Validator thread_count_check();

// -m and the options that say how to read it.
struct ModelOptions {
  std::string path;
  std::string config, tokenizer, position;
  int threads = 0;
  std::string kv_type = "f16";
  std::vector<std::string> loras;  // --lora ADAPTER[:SCALE], applied unmerged by load()
  void add(CLI::App& app, bool required = true);  // -m optional for commands that can run without a model
  void add_lora(CLI::App& app);                   // --lora, for the commands that run the model
  LoadOptions load_options() const;
  std::unique_ptr<Model> load() const;  // logs what was loaded to stderr
  int thread_count() const { return ThreadPool::threads_for_request(threads); }
  // Refuses, before any work, an output path that would overwrite a file of this checkpoint or whose
  // folder does not exist (so a long run does not fail at its last step).
  void check_output(const std::string& out) const;
};

// The prompt: raw text (-p), a text file (-f) or a conversation (--chat MESSAGES.json).
struct PromptOptions {
  std::string text, file, chat;
  void add(CLI::App& app);
  // Ids of the prompt; a conversation goes through the official chat template with the model's
  // model_max_length and generation_config max_new_tokens.
  std::vector<int32_t> ids(const Model& model) const;
};

// Sampling flags; unset ones take the model's generation_config.json defaults. --temp 0 means greedy
// (as in the server); --seed -1 (or none) draws a random seed, printed on stderr so a run can be repeated.
struct SamplingOptions {
  bool greedy = false;
  std::optional<float> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k;
  std::optional<int64_t> seed;
  void add(CLI::App& app);
  SamplingParams params(const GenerationConfig& defaults) const;
};

// The flags of the commands that decode (generate, chat): sampling, -n, --ignore-eos and --stop.
// -n / --max-new-tokens: unset = generation_config.json's max_new_tokens; -1 = no limit (until EOS, a
// stop string or the end of the context, as in llama.cpp); N >= 0 = at most N; anything else is an
// argument error.
struct DecodingOptions {
  SamplingOptions sampling;
  std::optional<int64_t> n_predict;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  // `tokens_what` and `stop_what` word -n and --stop for the command ("Longest answer", ...).
  void add(CLI::App& app, const std::string& tokens_what, const std::string& stop_what);
  GenerateOptions options(const GenerationConfig& defaults) const;
};

// The context for a prompt: --ctx if given, else max(model_max_length, 4096); throws if the prompt
// does not fit.
int64_t checked_context(const Model& model, int64_t ctx_flag, size_t prompt_tokens);
// A pure output type (f32, f16, bf16, q8_0, q4_0, ...); mixes such as q4_k_m are refused. Names as
// parse_file_type (quant_mix.h), which takes mixes too.
DType parse_float_type(const std::string& name);
// Writes `checkpoint` (read from `in_path`) to `out_path` as options.file_type(), converting rows on
// `threads` threads, with one line per tensor (name, type, shape) and a summary (sizes, time) on
// stderr. Shared by convert and quantize.
void write_gguf_reporting(const Checkpoint& checkpoint, const std::string& in_path, const std::string& out_path,
                          ConvertOptions options, int threads);
std::string json_ids(const std::vector<int32_t>& ids);  // "[1, 2, 3]"

}  // namespace baichuan::cli
