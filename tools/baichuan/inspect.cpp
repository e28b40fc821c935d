// baichuan inspect FILE_OR_FOLDER: what a checkpoint is, before running it. Opens it as every command
// does (the 4-bit path, the GGUF tokenizer repair and all) without building a model, and prints the
// format, the architecture, the element type of each group of tensors, the head and the tokenizer.
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "commands.h"
#include "common.h"
#include "model/checkpoint.h"
#include "progress.h"

namespace baichuan::cli {
namespace inspect_cli {  // the CLI is one translation unit: distinctive names

// The group of a canonical tensor name: "token_embd", "attn_q", ..., "output" (layers merged).
std::string inspect_group_of(const std::string& name) {
  std::string role = name;
  if (role.rfind("blk.", 0) == 0) role = role.substr(role.find('.', 4) + 1);
  if (role.size() > 7 && role.ends_with(".weight")) role.resize(role.size() - 7);
  return role;
}

struct InspectGroup {
  std::set<std::string> types;
  int64_t tensors = 0, bytes = 0;
};

std::string inspect_format_name(CheckpointFormat f) {
  switch (f) {
    case CheckpointFormat::HuggingFace: return "Hugging Face";
    case CheckpointFormat::MindSpore: return "MindSpore";
    case CheckpointFormat::Gguf: return "GGUF";
  }
  return "unknown";
}

std::string inspect_head_state(const std::optional<bool>& normalized) {
  if (!normalized) return "not stated by the file (llama.cpp's: raw); normalised at load";
  return *normalized ? "rows already L2-normalised" : "raw NormHead rows, normalised at load";
}

}  // namespace inspect_cli

Run add_inspect(CLI::App& app) {
  struct Command {
    ModelOptions model;
    bool json = false;
  };
  auto cmd = std::make_shared<Command>();
  app.add_option("CHECKPOINT", cmd->model.path, "A GGUF file, Hugging Face folder (4-bit included) or MindSpore .ckpt")
      ->required();
  app.add_option("--config", cmd->model.config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", cmd->model.tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_flag("--json", cmd->json, "Print one JSON object");
  return [cmd] {
    using namespace inspect_cli;
    const Checkpoint c = open_checkpoint(cmd->model.path, cmd->model.load_options());
    std::map<std::string, InspectGroup> groups;
    std::map<std::string, int64_t> bytes_by_type;
    for (const auto& [name, t] : c.tensors) {
      InspectGroup& g = groups[inspect_group_of(name)];
      g.types.insert(std::string(dtype_name(t.dtype)));
      ++g.tensors;
      g.bytes += static_cast<int64_t>(t.nbytes);
      bytes_by_type[std::string(dtype_name(t.dtype))] += static_cast<int64_t>(t.nbytes);
    }
    const ModelConfig& cfg = c.config;
    const bool nf4 = bytes_by_type.count("NF4") > 0;
    const std::string quantization =
        nf4 ? "bitsandbytes NF4 (4-bit Chat release), kept in 4 bits: float products with the exact weights"
            : "as the tensor types say";
    if (cmd->json) {
      nlohmann::json groups_json = nlohmann::json::object();
      for (const auto& [name, g] : groups)
        groups_json[name] = {{"types", g.types}, {"tensors", g.tensors}, {"bytes", g.bytes}};
      nlohmann::json out = {{"path", cmd->model.path},
                            {"format", inspect_format_name(c.format)},
                            {"description", c.description},
                            {"family", cfg.family()},
                            {"layers", cfg.num_layers},
                            {"hidden", cfg.hidden_size},
                            {"heads", cfg.num_heads},
                            {"intermediate", cfg.intermediate_size},
                            {"vocab", cfg.vocab_size},
                            {"context", cfg.model_max_length},
                            {"groups", groups_json},
                            {"bytes_by_type", bytes_by_type},
                            {"nf4", nf4},
                            {"head_normalized", c.head_normalized ? nlohmann::json(*c.head_normalized) : nlohmann::json()},
                            {"tokenizer", c.tokenizer_origin}};
      std::cout << out.dump() << "\n";
      return 0;
    }
    std::cout << cmd->model.path << "\n"
              << "  format:       " << inspect_format_name(c.format) << " (" << c.description << ")\n"
              << "  model:        Baichuan 2 " << cfg.family() << ", " << cfg.num_layers << " layers, hidden "
              << cfg.hidden_size << ", " << cfg.num_heads << " heads, intermediate " << cfg.intermediate_size
              << ", vocab " << cfg.vocab_size << "\n"
              << "  context:      " << cfg.model_max_length << " (model_max_length)\n"
              << "  quantization: " << quantization << "\n"
              << "  head:         " << inspect_head_state(c.head_normalized) << "\n"
              << "  tokenizer:    " << c.tokenizer_origin << "\n"
              << "  tensors:\n";
    for (const auto& [name, g] : groups) {
      std::string types;
      for (const auto& t : g.types) types += (types.empty() ? "" : "+") + t;
      std::cout << "    " << name << ": " << types << ", " << g.tensors << (g.tensors == 1 ? " tensor, " : " tensors, ")
                << strprintf("%.1f MiB", static_cast<double>(g.bytes) / (1 << 20)) << "\n";
    }
    return 0;
  };
}

}  // namespace baichuan::cli
