// The adapters a LoRA run trained, handed to the adapter module (model/lora_adapter.h) that writes
// them: a PEFT folder (adapter_config.json + adapter_model.safetensors) and a llama.cpp GGUF LoRA file.
#pragma once
#include <string>

#include "model/config.h"
#include "model/lora_adapter.h"
#include "train/lora.h"

namespace baichuan::train {

// The in-memory adapter of `lora`'s current A and B (float32), its config as fine-tune.py's
// LoraConfig would save it; `base_model` becomes base_model_name_or_path.
LoraAdapter to_lora_adapter(const LoraModel<float>& lora, const std::string& base_model);

struct LoraOutputPaths {
  std::string peft_dir, gguf;
};
// OUTDIR/adapter/ (PEFT) and OUTDIR/adapter.gguf (llama.cpp), each written atomically.
LoraOutputPaths write_lora_outputs(const std::string& out_dir, const LoraModel<float>& lora, const ModelConfig& config,
                                   const std::string& base_model);

}  // namespace baichuan::train
