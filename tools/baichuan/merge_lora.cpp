// baichuan merge-lora: W += scale * B A for every --lora adapter, written as `baichuan convert` writes.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "convert/gguf_convert.h"
#include "core/error.h"
#include "gguf_output.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_apply.h"

namespace baichuan::cli {

namespace {

// The output must not replace an adapter's file either (the base's are checked by convert's rule).
void refuse_overwriting_lora_adapters(const std::string& out, const std::vector<std::string>& loras) {
  namespace fs = std::filesystem;
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

}  // namespace

Run add_merge_lora(CLI::App& app) {
  struct Command {
    ModelOptions model;
    GgufOutputOptions output;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  app.add_option("--lora", cmd->model.loras,
                 "LoRA adapter to merge: a PEFT folder or a llama.cpp GGUF LoRA adapter, optionally :SCALE (multiplies "
                 "the adapter's own scale; default 1). Repeatable: adapters are added in turn")
      ->required();
  cmd->output.add(app, "(as `baichuan convert`; the merge itself is computed in float32)",
                  "Store lm_head rows as they are instead of L2-normalised (see convert)");
  return [cmd] {
    ConvertOptions options = cmd->output.convert_options(cmd->model.path);  // a bad --type before any work
    refuse_overwriting_checkpoint(cmd->output.out, cmd->model.path, cmd->model.load_options());
    refuse_overwriting_lora_adapters(cmd->output.out, cmd->model.loras);
    auto checkpoint = open_checkpoint(cmd->model.path, cmd->model.load_options());
    const auto adapters = read_lora_options(cmd->model.loras, checkpoint.config);
    const LoraDeltas deltas(adapters, checkpoint.config, checkpoint.qk_interleaved);
    for (const auto& [adapter, scale] : adapters)
      std::cerr << "merging LoRA adapter " << adapter.source << ": " << adapter.modules.size() << " modules, r "
                << adapter.config.r << ", scale " << adapter.modules.front().scale << " x " << scale << "\n";
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
