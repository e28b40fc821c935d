// The options of the commands that write a Baichuan GGUF checkpoint from a model (convert, merge-lora):
// -o, --type, --name, --raw-head, and the ConvertOptions they give.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "convert/gguf_convert.h"

namespace baichuan::cli {

struct GgufOutputOptions {
  std::string out, type = "f16", name;
  bool raw_head = false;
  // `type_help` follows the list of type names in --type's help; `raw_head_help` is --raw-head's.
  void add(CLI::App& app, const std::string& type_help, const std::string& raw_head_help);
  // The parsed --type, the head (L2-normalised unless --raw-head) and general.name (--name, else the
  // last part of `model_path`).
  ConvertOptions convert_options(const std::string& model_path) const;
};

}  // namespace baichuan::cli
