#include "common.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <set>

#include "convert/gguf_convert.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "generate/generation_defaults.h"
#include "kernels/cpu.h"
#include "progress.h"

namespace baichuan::cli {

namespace {

std::optional<int64_t> parse_integer(const std::string& value) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
  return n;
}

}  // namespace

CLI::Validator at_least(int64_t min) {
  return CLI::Validator(
      [min](std::string& value) -> std::string {
        auto n = parse_integer(value);
        if (!n) return "must be an integer, got '" + value.substr(0, 40) + (value.size() > 40 ? "...'" : "'");
        if (*n < min) return "must be at least " + std::to_string(min) + ", got " + value;
        return "";
      },
      ">= " + std::to_string(min));
}

CLI::Validator number_above(double floor, bool or_equal) {
  return CLI::Validator(
      [floor, or_equal](std::string& value) -> std::string {
        double x = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
        if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(x))
          return "must be a number, got '" + value.substr(0, 40) + (value.size() > 40 ? "...'" : "'");
        if (x < floor || (x == floor && !or_equal))
          return std::string("must be ") + (or_equal ? "at least " : "more than ") + strprintf("%g", floor) + ", got " +
                 value;
        return "";
      },
      (or_equal ? ">= " : "> ") + strprintf("%g", floor));
}

CLI::Validator thread_count_check() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto n = parse_integer(value);
        if (!n) return "the thread count must be an integer";
        try {
          ThreadPool::threads_for_request(*n);
        } catch (const Error& e) {
          return e.what();
        }
        return "";
      },
      "0..hardware threads");
}

void ModelOptions::add(CLI::App& app, bool required) {
  app.add_option("-m,--model", path, "Checkpoint: Hugging Face folder, MindSpore .ckpt, or .gguf")->required(required);
  app.add_option("--config", config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", position, "Force the position scheme: rope (7B family) or alibi (13B family)")
      ->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("-t,--threads", threads, "Threads (default: all hardware threads)")->check(thread_count_check());
  app.add_option("--kv-type", kv_type, "KV cache type: f16 (default), f32 (exact) or q8_0");
}

void ModelOptions::add_lora(CLI::App& app) {
  app.add_option("--lora", loras,
                 "LoRA adapter to apply unmerged: a PEFT folder (adapter_config.json + adapter_model.safetensors/.bin) "
                 "or a llama.cpp GGUF LoRA adapter, optionally :SCALE (multiplies the adapter's own scale; default 1). "
                 "Repeatable");
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
  const DType kv = parse_kv_type(kv_type);  // before loading: a typo should not cost a model load
  std::unique_ptr<Model> model;
  {
    ThreadPool pool(thread_count());  // prepares the weights (head norms, packing); the command makes its own
    model = load_model(path, load_options(), &pool);
  }
  model->set_kv_type(kv);
  auto adapters = read_lora_options(loras, model->config());
  if (!adapters.empty())
    model->attach_lora(std::make_shared<const LoraDeltas>(adapters, model->config(), model->checkpoint().qk_interleaved));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto& c = model->config();
  const ModelPreparation& prep = model->preparation();
  std::string packed;
  if (prep.packed_matrices > 0)
    packed = strprintf(" (packing %lld matrices for the SIMD kernels, %.0f MiB: %.2f s)",
                       static_cast<long long>(prep.packed_matrices), static_cast<double>(prep.packed_bytes) / (1 << 20),
                       prep.seconds);
  std::cerr << "loaded " << path << " (" << model->checkpoint().description << "): Baichuan 2 " << c.family() << ", "
            << c.num_layers << " layers, hidden " << c.hidden_size << ", " << c.num_heads << " heads, vocab "
            << c.vocab_size << " in " << strprintf("%.2f", secs) << " s" << packed << "; " << kernels::describe_cpu()
            << ", " << thread_count() << " threads, " << dtype_name(kv) << " KV cache\n";
  for (const auto& [adapter, scale] : adapters) {
    std::set<std::string> targets;
    for (const auto& m : adapter.modules) targets.insert(lora_target_name(m.target));
    std::string names;
    for (const auto& t : targets) names += (names.empty() ? "" : ",") + t;
    std::cerr << "applying LoRA adapter " << adapter.source << " unmerged: " << adapter.modules.size() << " modules ("
              << names << "), r " << adapter.config.r << ", scale " << adapter.modules.front().scale << " x " << scale << "\n";
  }
  return model;
}

void ModelOptions::check_output(const std::string& out) const {
  namespace fs = std::filesystem;
  if (!path.empty()) refuse_overwriting_checkpoint(out, path, load_options());
  std::error_code ec;
  for (const std::string& option : loras) {  // an adapter file, or any file of an adapter folder
    const fs::path adapter = parse_lora_option(option).path;
    std::vector<fs::path> inputs{adapter};
    if (fs::is_directory(adapter, ec))
      for (const auto& entry : fs::directory_iterator(adapter, ec)) inputs.push_back(entry.path());
    for (const fs::path& input : inputs)
      if (fs::exists(out, ec) && fs::equivalent(out, input, ec))
        fail("the output ", out, " is ", input == adapter ? "" : "a file of ", "the adapter ", adapter.string(),
             " given to --lora; writing there would destroy the input: choose another output path");
  }
  fs::path folder = fs::path(out).parent_path();
  if (!folder.empty() && !fs::is_directory(folder, ec)) fail(out, ": the folder ", folder.string(), " does not exist");
  if (fs::is_directory(out, ec)) fail(out, ": is a folder; give a file path for the output");
}

void PromptOptions::add(CLI::App& app) {
  auto* p = app.add_option("-p,--prompt", text, "Prompt text (used as is: no BOS, no template)");
  auto* f = app.add_option("-f,--file", file, "Read the prompt text from a file");
  auto* c = app.add_option("--chat", chat, "A conversation: JSON file [{\"role\":..., \"content\":...}, ...]");
  p->excludes(f)->excludes(c);
  f->excludes(c);
}

int64_t checked_context(const Model& model, int64_t ctx_flag, size_t prompt_tokens) {
  int64_t context = ctx_flag > 0 ? ctx_flag : default_context(model.config());
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
  app.add_option("--temp,--temperature", temperature, "Sampling temperature (0 = greedy)")
      ->check(number_above(0, true));
  app.add_option("--top-k", top_k, "Keep the k most likely tokens (0 = off)");
  app.add_option("--top-p", top_p, "Nucleus sampling threshold (1 = off)");
  app.add_option("--repeat-penalty,--repetition-penalty", repetition_penalty, "Repetition penalty (1 = off)");
  app.add_option("--seed", seed, "Random seed for repeatable sampling (-1 = random, printed)")
      ->check(at_least(-1));
}

SamplingParams SamplingOptions::params(const GenerationConfig& defaults) const {
  SamplingParams p = SamplingParams::from(defaults);
  if (greedy) use_greedy(p);
  if (temperature && *temperature == 0) {  // as the server and OpenAI: temperature 0 is --greedy
    use_greedy(p);
  } else if (temperature) {
    p.temperature = *temperature;
    p.greedy = false;  // an explicit temperature asks for sampling, whatever do_sample says
  }
  if (top_k) p.top_k = *top_k;
  if (top_p) p.top_p = *top_p;
  if (repetition_penalty) p.repetition_penalty = *repetition_penalty;
  if (seed && *seed >= 0) {
    p.seed = static_cast<uint64_t>(*seed);
  } else {
    p.seed = random_seed();
    if (!p.greedy) std::cerr << "sampling seed " << p.seed << " (--seed " << p.seed << " repeats this run)\n";
  }
  p.validate();
  return p;
}

void DecodingOptions::add(CLI::App& app, const std::string& tokens_what, const std::string& stop_what) {
  sampling.add(app);
  app.add_option("-n,--n-predict,--max-new-tokens", n_predict,
                 tokens_what +
                     " in tokens (default: generation_config.json max_new_tokens; -1: until EOS or the context is full)")
      ->check(at_least(-1));
  app.add_flag("--ignore-eos", ignore_eos, "Keep generating after the end-of-sequence token");
  app.add_option("--stop", stop, stop_what + " when the text contains this string (repeatable)");
}

GenerateOptions DecodingOptions::options(const GenerationConfig& defaults) const {
  GenerateOptions o;
  o.sampling = sampling.params(defaults);
  o.max_new_tokens = !n_predict ? defaults.max_new_tokens
                     : *n_predict == -1 ? std::numeric_limits<int64_t>::max()
                                        : *n_predict;
  o.ignore_eos = ignore_eos;
  o.stop = stop;
  return o;
}

DType parse_float_type(const std::string& name) {
  FileType type = parse_file_type(name);
  if (type.mix != QuantMix::Pure) fail("type '", name, "' is a mix of types; a single type is needed here");
  return type.base;
}

namespace {

std::string gigabytes(uintmax_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.3f GB", static_cast<double>(bytes) / 1e9);
  return s;
}

// Bytes of a file, or of the regular files in a folder.
uintmax_t size_on_disk(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    uintmax_t bytes = fs::file_size(path, ec);
    return ec ? 0 : bytes;
  }
  uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

}  // namespace

void write_gguf_reporting(const Checkpoint& checkpoint, const std::string& in_path, const std::string& out_path,
                          ConvertOptions options, int threads) {
  const FileType type = options.file_type();
  validate_tensors(checkpoint);
  const int n_threads = ThreadPool::threads_for_request(threads);
  ThreadPool pool(n_threads);
  options.pool = &pool;
  uintmax_t source_bytes = 0;
  options.on_tensor = [&](const TensorWritten& t) {
    source_bytes += t.source->nbytes;
    const auto& w = *t.written;
    Tensor shape_of;
    shape_of.shape = w.shape;
    char line[512];
    std::snprintf(line, sizeof line, "[%4zu/%zu] %-28s %-5s %-14s <- %-5s %8.3f s\n", t.index + 1, t.count, w.name.c_str(),
                  std::string(dtype_name(w.dtype)).c_str(), shape_of.shape_str().c_str(),
                  std::string(dtype_name(t.source->dtype)).c_str(), t.seconds);
    std::cerr << line;
  };
  std::cerr << "writing " << out_path << " as " << file_type_name(type) << " from " << in_path << " ("
            << checkpoint.description << ") on " << n_threads << " threads\n";
  auto start = std::chrono::steady_clock::now();
  write_gguf_checkpoint(checkpoint, out_path, options);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uintmax_t in_bytes = size_on_disk(in_path), out_bytes = std::filesystem::file_size(out_path);
  std::cerr << "wrote " << out_path << " (" << file_type_name(type) << "): input " << gigabytes(in_bytes) << " on disk ("
            << gigabytes(source_bytes) << " of weights), output " << gigabytes(out_bytes) << " (" << out_bytes
            << " bytes) in " << strprintf("%.2f", secs) << " s\n";
}

std::string json_ids(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace baichuan::cli
