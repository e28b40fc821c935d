// baichuan convert: any readable checkpoint -> GGUF (float, block-quantized or a llama.cpp mix), streaming.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "model/gguf_checkpoint.h"

namespace baichuan::cli {

Run add_convert(CLI::App& app) {
  struct Command {
    ModelOptions model;
    std::string out, type = "f16", name;
    bool raw_head = false;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  app.add_option("-o,--output", cmd->out, "Output .gguf file")->required();
  app.add_option("--type", cmd->type,
                 std::string("Type of the matrices: ") + file_type_names() +
                     " (as `baichuan quantize`; norms stay f32; rows that are not whole blocks fall back)");
  app.add_option("--name", cmd->name, "general.name (default: the checkpoint's name)");
  app.add_flag("--raw-head", cmd->raw_head,
               "Store lm_head rows as they are (lossless, for round trips) instead of L2-normalised (the default, "
               "which every engine computes right; llama.cpp, LM Studio and Ollama do not apply NormHead). "
               "This engine computes the same logits from both");
  bool normalize_head_flag = false;  // the default now; accepted so that older scripts keep working
  app.add_flag("--normalize-head", normalize_head_flag, "(the default)")->group("");
  return [cmd] {
    FileType type = parse_file_type(cmd->type);
    refuse_overwriting_checkpoint(cmd->out, cmd->model.path, cmd->model.load_options());
    auto checkpoint = open_checkpoint(cmd->model.path, cmd->model.load_options());
    ConvertOptions options;
    options.type = type.base;
    options.mix = type.mix;
    options.normalize_head = !cmd->raw_head;
    options.name = cmd->name.empty() ? std::filesystem::path(cmd->model.path).filename().string() : cmd->name;
    write_gguf_reporting(checkpoint, cmd->model.path, cmd->out, options, cmd->model.threads);
    return 0;
  };
}

}  // namespace baichuan::cli
