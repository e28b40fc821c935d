// What the two adapter file formats (lora_peft_format.cpp, lora_gguf_format.cpp) share with the
// adapter itself (lora_adapter.cpp): the checks and conversion of adapter tensors both readers use,
// and the readers read_lora_adapter dispatches to by path. Internal to src/model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/lora_adapter.h"

namespace baichuan::lora_formats {

// The module path after "model.layers.{i}.": "self_attn" or "mlp", then the target's name.
inline const char* lora_target_parent(LoraTarget t) {
  return t == LoraTarget::WPack || t == LoraTarget::OProj ? "self_attn" : "mlp";
}

// The elements of a float tensor (F32/F16/BF16, or a GGUF block type) as float32; Error naming `what`
// and the tensor for another type or a non-finite value.
std::vector<float> lora_tensor_floats(const Tensor& t, const std::string& what);
std::string lora_shape_str(std::vector<int64_t> shape);  // "[4, 32]"
// Checks a tensor's shape; the message names the file, the tensor, both shapes and `why`.
void lora_check_shape(const Tensor& t, const std::vector<int64_t>& expected, const std::string& what,
                      const std::string& why);
void lora_sort_modules(std::vector<LoraModule>& modules);  // by (layer, target)

// The PEFT folder at (or holding the file) `path`; the files it reads or may read.
LoraAdapter read_peft_adapter_folder(const std::string& path, const ModelConfig& config);
std::vector<std::string> peft_adapter_files(const std::string& path);
// A llama.cpp GGUF LoRA adapter file.
LoraAdapter read_gguf_lora_adapter_file(const std::string& path, const ModelConfig& config);

}  // namespace baichuan::lora_formats
