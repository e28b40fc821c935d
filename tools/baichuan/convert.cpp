// baichuan convert: any readable checkpoint -> GGUF (float, block-quantized or a llama.cpp mix), streaming.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "convert/gguf_convert.h"
#include "core/error.h"
#include "gguf_output.h"
#include "model/gguf_checkpoint.h"

namespace baichuan::cli {

void GgufOutputOptions::add(CLI::App& app, const std::string& type_help, const std::string& raw_head_help) {
  app.add_option("-o,--output", out, "Output .gguf file")->required();
  app.add_option("--type", type, std::string("Type of the matrices: ") + file_type_names() + " " + type_help);
  app.add_option("--name", name, "general.name (default: the checkpoint's name)");
  app.add_flag("--raw-head", raw_head, raw_head_help);
}

ConvertOptions GgufOutputOptions::convert_options(const std::string& model_path) const {
  const FileType file_type = parse_file_type(type);
  ConvertOptions options;
  options.type = file_type.base;
  options.mix = file_type.mix;
  options.normalize_head = !raw_head;
  options.name = name.empty() ? std::filesystem::path(model_path).filename().string() : name;
  return options;
}

Run add_convert(CLI::App& app) {
  struct Command {
    ModelOptions model;
    GgufOutputOptions output;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  cmd->output.add(app, "(as `baichuan quantize`; norms stay f32; rows that are not whole blocks fall back)",
                  "Store lm_head rows as they are (lossless, for round trips) instead of L2-normalised (the default, "
                  "which every engine computes right; llama.cpp, LM Studio and Ollama do not apply NormHead). "
                  "This engine computes the same logits from both");
  bool normalize_head_flag = false;  // the default now; accepted so that older scripts keep working
  app.add_flag("--normalize-head", normalize_head_flag, "(the default)")->group("");
  return [cmd] {
    const ConvertOptions options = cmd->output.convert_options(cmd->model.path);  // a bad --type before any work
    refuse_overwriting_checkpoint(cmd->output.out, cmd->model.path, cmd->model.load_options());
    auto checkpoint = open_checkpoint(cmd->model.path, cmd->model.load_options());
    write_gguf_reporting(checkpoint, cmd->model.path, cmd->output.out, options, cmd->model.threads);
    return 0;
  };
}

}  // namespace baichuan::cli
