// "ADAPTER[:SCALE]", the way every caller names an adapter to apply unmerged (the CLI's --lora, the
// Python binding's lora=): a PEFT folder or GGUF LoRA adapter, and a multiplier of its own scale
// (default 1). The text after the last ':' is the scale when it is a number, else part of the path.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora_apply.h"

namespace baichuan {

struct LoraOption {
  std::string path;
  float scale = 1.0f;
};
LoraOption parse_lora_option(const std::string& text);
// Reads every adapter, checked against `config` (Error naming the adapter at fault).
std::vector<ScaledLoraAdapter> read_lora_options(const std::vector<std::string>& options, const ModelConfig& config);

}  // namespace baichuan
