// LoRA adapters in memory (lora_adapter.cpp), and the two file formats they travel in (layouts in
// ../shared/specs/finetune-formats.md; lora_peft_format.cpp and lora_gguf_format.cpp):
//   - a PEFT folder: adapter_config.json + adapter_model.safetensors (or adapter_model.bin), tensors
//     base_model.model.model.layers.{i}.self_attn.W_pack.lora_A.weight [r, in] / .lora_B.weight [out, r];
//   - a llama.cpp GGUF LoRA adapter: blk.{i}.attn_q.weight.lora_a [r, in] / .lora_b [out, r], W_pack
//     split into attn_q/attn_k/attn_v with Q and K rows of B permuted like the base GGUF.
// In memory an adapted module holds float32 A and B in the Hugging Face layout (W_pack rows in the
// official fused q|k|v order, rotate-half Q/K rows) and its scale, so that the module computes
//   y = W x + scale * B (A x)        and merging is   W += scale * B A.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace baichuan {

// The Baichuan 2 linear layers an adapter may target (Hugging Face module names).
enum class LoraTarget { WPack, OProj, GateProj, UpProj, DownProj };
inline constexpr LoraTarget kLoraTargets[] = {LoraTarget::WPack, LoraTarget::OProj, LoraTarget::GateProj,
                                               LoraTarget::UpProj, LoraTarget::DownProj};

const char* lora_target_name(LoraTarget target);  // "W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"
std::optional<LoraTarget> parse_lora_target(const std::string& name);  // the inverse; nullopt if unknown
// "model.layers.3.self_attn.W_pack", "model.layers.3.mlp.down_proj": the module path PEFT matches
// target_modules, rank_pattern and alpha_pattern against.
std::string lora_module_path(int64_t layer, LoraTarget target);
// The GGUF base tensor role(s) of a target, whose rows stack up to its official matrix: W_pack is
// {"attn_q", "attn_k", "attn_v"}, the others one role each.
std::vector<std::string> lora_gguf_roles(LoraTarget target);
// The target's weight shape [out, in] for this model (W_pack: [3 * hidden, hidden]).
int64_t lora_in_features(const ModelConfig& config, LoraTarget target);
int64_t lora_out_features(const ModelConfig& config, LoraTarget target);

// One adapted module: A [rank, in] and B [out, rank], row-major float32.
struct LoraModule {
  int64_t layer = 0;
  LoraTarget target = LoraTarget::WPack;
  int64_t rank = 0;
  double alpha = 0;    // this module's lora_alpha (alpha_pattern applied)
  float scale = 0;     // alpha / rank, or alpha / sqrt(rank) with rsLoRA
  std::vector<float> a, b;
};

// The adapter_config.json fields that are kept (to write the adapter back) or that change the maths.
struct LoraAdapterConfig {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  std::vector<std::string> target_modules;  // a list, or...
  std::string target_modules_regex;         // ...a regex string (PEFT: re.fullmatch on the module path)
  bool use_rslora = false;
  std::map<std::string, int64_t> rank_pattern;  // per-module overrides of r, keys matched as PEFT does
  std::map<std::string, double> alpha_pattern;  // per-module overrides of lora_alpha
  std::string base_model_name_or_path;
};

struct LoraAdapter {
  std::string source;  // the path it was read from ("" if built in memory), for messages
  LoraAdapterConfig config;
  std::vector<LoraModule> modules;  // sorted by (layer, target), at most one per pair
  // The model's layer count (the readers set it; 0 = unknown, taken as the last adapted layer + 1): the
  // PEFT writer names targets briefly ("W_pack") only when every layer of the model has them.
  int64_t num_layers = 0;

  const LoraModule* find(int64_t layer, LoraTarget target) const;  // nullptr if not adapted
};

// The scale PEFT gives a module: alpha / rank, or alpha / sqrt(rank) with rsLoRA.
float lora_scale(double alpha, int64_t rank, bool use_rslora);
// PEFT's rank_pattern / alpha_pattern lookup: the first key (in sorted order, as PEFT saves them) that
// matches the end of `module_path` after a dot (regex `(.*\.)?(KEY)$`); nullopt if none does.
std::optional<std::string> lora_pattern_key(const std::vector<std::string>& keys, const std::string& module_path);

// Reads a PEFT adapter folder (or its adapter_config.json, adapter_model.safetensors or
// adapter_model.bin) or a llama.cpp GGUF LoRA adapter (.gguf), checked against `config`: every
// tensor's shape, every targeted module complete. Tensors F32, F16 or BF16. Throws Error naming the
// file, field or tensor at fault for anything it cannot apply exactly (DoRA, modules_to_save, biases,
// fan_in_fan_out, embedding or lm_head adapters, unknown targets, shapes, missing A or B).
LoraAdapter read_lora_adapter(const std::string& path, const ModelConfig& config);

// Every file read_lora_adapter(path) reads or may read (for refusing an output that would replace one).
std::vector<std::string> lora_adapter_files(const std::string& path);

// The same over in-memory images of the files (the fuzz entry points); `path` names them in errors.
LoraAdapter parse_peft_adapter(const std::string& config_json, const std::byte* safetensors, size_t size,
                               const std::string& path, const ModelConfig& config);
LoraAdapter parse_gguf_lora_adapter(const std::byte* data, size_t size, const std::string& path,
                                    const ModelConfig& config);

// Checks an adapter built in memory (the trainer's) is consistent with `config` before it is written or
// applied: shapes, ranks, finite values. Throws Error naming the module.
void validate_lora_adapter(const LoraAdapter& adapter, const ModelConfig& config);

// Writes a PEFT folder `dir` (created if absent): adapter_config.json (as PEFT's json.dumps(indent=2,
// sort_keys=True), inference_mode true) and adapter_model.safetensors (F32, metadata {"format": "pt"}),
// each atomically.
void write_peft_adapter(const std::string& dir, const LoraAdapter& adapter);

// Writes a GGUF LoRA adapter as llama.cpp's convert_lora_to_gguf.py does (general.type adapter,
// adapter.lora.alpha; W_pack split: A repeated for q, k, v, B in row blocks, Q/K rows permuted),
// atomically. `type` F32 or F16. A module whose scale is not lora_alpha / rank (rsLoRA, patterns)
// has the difference folded into B, since llama.cpp computes the scale from the one alpha.
void write_gguf_lora_adapter(const std::string& path, const LoraAdapter& adapter, const ModelConfig& config,
                             DType type = DType::F32);

}  // namespace baichuan
