// baichuan quantize IN OUT TYPE: any readable checkpoint (GGUF, Hugging Face folder, MindSpore .ckpt)
// -> a GGUF of another type, streaming one tensor at a time, like llama-quantize but also from the
// original checkpoints. Mixes (q4_k_m, q5_k_m) give each tensor the type llama.cpp's quantizer would.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "convert/gguf_convert.h"
#include "core/error.h"
#include "model/gguf_checkpoint.h"

namespace baichuan::cli {

Run add_quantize(CLI::App& app) {
  struct Command {
    std::string in, out, type, config, tokenizer, position;
    int threads = 0;
  };
  auto cmd = std::make_shared<Command>();
  app.add_option("IN", cmd->in, "Input checkpoint: .gguf, Hugging Face folder or MindSpore .ckpt")->required();
  app.add_option("OUT", cmd->out, "Output .gguf file")->required();
  app.add_option("TYPE", cmd->type, std::string("Output type: ") + file_type_names() + " (case does not matter)")
      ->required();
  app.add_option("-t,--threads", cmd->threads, "Threads (default: all hardware threads)")->check(thread_count_check());
  app.add_option("--config", cmd->config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", cmd->position, "Force the position scheme: rope (7B family) or alibi (13B family)")
      ->check(CLI::IsMember({"rope", "alibi"}));
  return [cmd] {
    FileType type = parse_file_type(cmd->type);
    LoadOptions load;
    if (!cmd->config.empty()) load.config_path = cmd->config;
    if (!cmd->tokenizer.empty()) load.tokenizer_path = cmd->tokenizer;
    if (!cmd->position.empty()) load.position = parse_position_encoding(cmd->position);
    refuse_overwriting_checkpoint(cmd->out, cmd->in, load);
    auto checkpoint = open_checkpoint(cmd->in, load);
    ConvertOptions options;
    options.type = type.base;
    options.mix = type.mix;
    options.name = std::filesystem::path(cmd->in).filename().string();
    write_gguf_reporting(checkpoint, cmd->in, cmd->out, options, cmd->threads);
    return 0;
  };
}

}  // namespace baichuan::cli
