// baichuan convert: any readable checkpoint -> GGUF (F32, F16 or BF16 matrices), streaming.
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
    bool normalize_head = false;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  app.add_option("-o,--output", cmd->out, "Output .gguf file")->required();
  app.add_option("--type", cmd->type, "Type of the matrices: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 (norms stay f32; rows that are not whole blocks stay f16)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}));
  app.add_option("--name", cmd->name, "general.name (default: the checkpoint's name)");
  app.add_flag("--normalize-head", cmd->normalize_head,
               "Store lm_head rows already L2-normalised (needed by engines that do not apply NormHead, e.g. "
               "llama.cpp); this engine normalises on load either way");
  return [cmd] {
    auto checkpoint = open_checkpoint(cmd->model.path, cmd->model.load_options());
    ConvertOptions options;
    options.type = parse_float_type(cmd->type);
    options.normalize_head = cmd->normalize_head;
    options.name = cmd->name.empty() ? std::filesystem::path(cmd->model.path).filename().string() : cmd->name;
    std::cerr << "converting " << cmd->model.path << " (" << checkpoint.description << ") to " << cmd->out << " as "
              << cmd->type << "\n";
    write_gguf_checkpoint(checkpoint, cmd->out, options);
    std::cerr << "wrote " << cmd->out << " (" << std::filesystem::file_size(cmd->out) << " bytes)\n";
    return 0;
  };
}

}  // namespace baichuan::cli
