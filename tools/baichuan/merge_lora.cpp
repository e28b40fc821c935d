// baichuan merge-lora: W += scale * B A for every --lora adapter, written as `baichuan convert` writes
// (a GGUF file) or, with --format hf, as a Hugging Face folder (train/hf_export.h).
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "convert/gguf_convert.h"
#include "core/error.h"
#include "gguf_output.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_apply.h"
#include "train/hf_export.h"
#include "train/lora_merge.h"
#include "train/memory_plan.h"
#include "train/train_model.h"

namespace baichuan::cli {

namespace merge_lora {

namespace fs = std::filesystem;

// The output must not replace an adapter's file either (the base's are checked by convert's rule).
void refuse_overwriting_lora_adapters(const std::string& out, const std::vector<std::string>& loras) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  for (const auto& text : loras) {
    const std::string adapter = parse_lora_option(text).path;
    for (const auto& file : lora_adapter_files(adapter))
      if (fs::exists(file, ec) && fs::equivalent(out, file, ec))
        fail("the output ", out, " is ", out == file ? "" : "the same file as " + file + ", ",
             "a file of the LoRA adapter ", adapter, "; writing there would destroy the input: choose another output path");
  }
}

// "out/" names the folder "out".
fs::path output_folder(const std::string& out) {
  fs::path p = fs::path(out).lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

// The files a Hugging Face folder written by write_hf_folder may hold: an existing folder holding only
// these is replaced; anything else in it is refused rather than deleted.
bool is_hf_output_file(const std::string& name) {
  return name == "config.json" || name == "generation_config.json" || name == "tokenizer.model" ||
         name == "model.safetensors" || name == "model.safetensors.index.json" ||
         (name.starts_with("model-") && name.ends_with(".safetensors"));
}

// Before any work: the folder's parent exists; an existing folder holds only a model folder's files;
// no input file (the base's, an adapter's) is inside it.
void check_hf_output(const fs::path& out, const ModelOptions& model) {
  std::error_code ec;
  const fs::path parent = out.parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) fail(out.string(), ": the folder ", parent.string(), " does not exist");
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    fail(out.string(), ": exists and is not a folder (--format hf writes a Hugging Face folder)");
  std::vector<std::string> inputs = checkpoint_files(model.path, model.load_options());
  for (const auto& text : model.loras)
    for (const auto& file : lora_adapter_files(parse_lora_option(text).path)) inputs.push_back(file);
  const fs::path out_full = fs::weakly_canonical(out, ec);
  for (const auto& file : inputs) {
    if (!fs::exists(file, ec)) continue;
    const fs::path in_full = fs::weakly_canonical(file, ec);
    if (in_full == out_full || in_full.parent_path() == out_full)
      fail("the output folder ", out.string(), " holds ", file, ", an input of this merge; writing there would destroy "
           "the input: choose another output folder");
  }
  if (!fs::is_directory(out, ec)) return;
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !is_hf_output_file(name))
      fail(out.string(), ": the folder exists and holds '", name, "', which is not a file of a model folder this "
           "command writes; choose a new folder (it is replaced as a whole)");
  }
}

// Writes the merged model as a whole (replace_hf_folder), so an interrupted run leaves either the old
// folder or the new one.
void write_merged_hf_folder(const fs::path& out, const Checkpoint& checkpoint, const LoraDeltas& deltas,
                            const train::HfFolderSources& sources, int threads) {
  auto model = train::load_train_model<float>(checkpoint, /*with_gradients=*/false);
  ThreadPool pool(threads);
  train::merge_lora_deltas(model, deltas, pool);
  train::replace_hf_folder(out.string(), model, sources);
}

}  // namespace merge_lora

Run add_merge_lora(CLI::App& app) {
  struct Command {
    ModelOptions model;
    GgufOutputOptions output;
    std::string format, max_shard_size;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  app.add_option("--lora", cmd->model.loras,
                 "LoRA adapter to merge: a PEFT folder or a llama.cpp GGUF LoRA adapter, optionally :SCALE (multiplies "
                 "the adapter's own scale; default 1). Repeatable: adapters are added in turn")
      ->required();
  cmd->output.add(app, "(as `baichuan convert`; the merge itself is computed in float32)",
                  "Store lm_head rows as they are instead of L2-normalised (see convert)");
  app.get_option("--output")->description("Output .gguf file, or the folder to write with --format hf");
  app.add_option("--format", cmd->format,
                 "gguf: one GGUF file, as convert writes. hf: a Hugging Face folder as the official code loads it "
                 "(config.json, generation_config.json, tokenizer.model, float32 safetensors with the official names; "
                 "lm_head rows as stored). Default: hf when -o is an existing folder or ends in '/', else gguf")
      ->check(CLI::IsMember({"gguf", "hf"}));
  app.add_option("--max-shard-size", cmd->max_shard_size,
                 "With --format hf: safetensors shards of at most this size, with an index, as save_pretrained "
                 "(default 2G)");
  const CLI::Option* type_option = app.get_option("--type");
  const CLI::Option* name_option = app.get_option("--name");
  const CLI::Option* raw_head_option = app.get_option("--raw-head");
  return [cmd, type_option, name_option, raw_head_option] {
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool hf = cmd->format.empty()
                        ? fs::is_directory(cmd->output.out, ec) || cmd->output.out.ends_with('/')
                        : cmd->format == "hf";
    if (hf) {  // options of the GGUF output that do not apply, refused rather than ignored
      if (type_option->count() && parse_float_type(cmd->output.type) != DType::F32)
        fail("--type ", cmd->output.type, ": --format hf writes float32 safetensors (the merge is exact in float32); "
             "--type is for GGUF output");
      if (name_option->count()) fail("--name sets a GGUF's general.name; it does not apply to --format hf");
      if (raw_head_option->count())
        fail("--raw-head is for GGUF output; --format hf always stores lm_head rows as they are, as the official code does");
    } else if (!cmd->max_shard_size.empty()) {
      fail("--max-shard-size applies to --format hf only");
    }
    train::HfFolderSources sources;
    if (!cmd->max_shard_size.empty()) sources.max_shard_bytes = train::parse_byte_size(cmd->max_shard_size, "--max-shard-size");
    const fs::path out_folder = merge_lora::output_folder(cmd->output.out);
    ConvertOptions options;
    if (hf) {
      merge_lora::check_hf_output(out_folder, cmd->model);
    } else {
      options = cmd->output.convert_options(cmd->model.path);  // a bad --type before any work
      refuse_overwriting_checkpoint(cmd->output.out, cmd->model.path, cmd->model.load_options());
      merge_lora::refuse_overwriting_lora_adapters(cmd->output.out, cmd->model.loras);
    }
    auto checkpoint = open_checkpoint(cmd->model.path, cmd->model.load_options());
    const auto adapters = read_lora_options(cmd->model.loras, checkpoint.config);
    for (const auto& [adapter, scale] : adapters)
      std::cerr << "merging LoRA adapter " << adapter.source << ": " << adapter.modules.size() << " modules, r "
                << adapter.config.r << ", scale " << adapter.modules.front().scale << " x " << scale << "\n";
    if (hf) {
      // The float model is in the official row order, so the deltas are too (no GGUF Q/K permutation).
      const LoraDeltas deltas(adapters, checkpoint.config, /*qk_interleaved=*/false);
      sources.config = checkpoint.config;
      sources.generation_json = checkpoint.generation_json;
      sources.tokenizer_model = checkpoint.tokenizer ? checkpoint.tokenizer->model_bytes() : "";
      merge_lora::write_merged_hf_folder(out_folder, checkpoint, deltas, sources, cmd->model.thread_count());
      std::cerr << "wrote " << out_folder.string() << " (Hugging Face folder, float32)\n";
      return 0;
    }
    const LoraDeltas deltas(adapters, checkpoint.config, checkpoint.qk_interleaved);
    const int64_t layers = checkpoint.config.num_layers;
    options.row_edit = [&deltas, layers](const std::string& name) -> std::function<void(int64_t, float*)> {
      auto projection = lora_projection_of(name);
      if (!projection || projection->first >= layers || !deltas.adapts(projection->first, projection->second)) return {};
      return [&deltas, p = *projection](int64_t row, float* values) { deltas.add_to_row(p.first, p.second, row, values); };
    };
    write_gguf_reporting(checkpoint, cmd->model.path, cmd->output.out, options, cmd->model.threads);
    return 0;
  };
}

}  // namespace baichuan::cli
