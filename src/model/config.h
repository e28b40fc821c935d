// The Baichuan 2 model configuration, read from a Hugging Face config.json (+ generation_config.json)
// or from GGUF metadata.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace baichuan {

// 7B family: rotary embeddings; 13B family: ALiBi. The HF configs tell them apart: 7B configs carry
// `max_position_embeddings`, 13B configs do not.
enum class PositionEncoding { Rope, Alibi };

// How a source spells the config fields, for error messages (config.json's names by default).
struct ConfigFieldNames {
  std::string vocab_size = "vocab_size", hidden_size = "hidden_size", intermediate_size = "intermediate_size",
              num_heads = "num_attention_heads", num_layers = "num_hidden_layers",
              model_max_length = "model_max_length", rms_norm_eps = "rms_norm_eps", rope_theta = "rope_theta",
              max_alibi_bias = "max_alibi_bias";
};

struct ModelConfig {
  int64_t vocab_size = 125696;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_heads = 0;
  int64_t num_layers = 0;
  float rms_norm_eps = 1e-6f;
  int64_t model_max_length = 4096;
  PositionEncoding position = PositionEncoding::Rope;
  float rope_theta = 10000.0f;
  float max_alibi_bias = 8.0f;
  int32_t bos_token_id = 1;
  int32_t eos_token_id = 2;
  int32_t pad_token_id = 0;
  double z_loss_weight = 0.0;  // training only: weight of the official z-loss (mean of max logit^2)

  int64_t head_dim() const { return hidden_size / num_heads; }
  std::string family() const { return position == PositionEncoding::Rope ? "7B (RoPE)" : "13B (ALiBi)"; }
  // Throws Error naming `what`, the field and its value if a dimension is missing, non-positive,
  // inconsistent or beyond the limits below, or a float parameter is not a positive finite number.
  void validate(const std::string& what, const ConfigFieldNames& names = {}) const;
};

// Upper limits on sizes read from files: far above any Baichuan 2 (hidden 5120, 40 layers, vocab
// 125,696, context 4096), low enough that a crafted value is refused before it sizes an allocation.
struct ConfigLimits {
  static constexpr int64_t kMaxVocab = int64_t{1} << 22;
  static constexpr int64_t kMaxHidden = int64_t{1} << 16;
  static constexpr int64_t kMaxIntermediate = int64_t{1} << 18;
  static constexpr int64_t kMaxLayers = 1024;
  static constexpr int64_t kMaxContext = int64_t{1} << 22;
};

// Defaults for generation and the chat prompt (generation_config.json).
struct GenerationConfig {
  int64_t max_new_tokens = 2048;
  float temperature = 0.3f;
  int64_t top_k = 5;
  float top_p = 0.85f;
  float repetition_penalty = 1.05f;
  bool do_sample = true;
  int32_t user_token_id = 195;
  int32_t assistant_token_id = 196;
  int32_t eos_token_id = 2;
};

// Parses config.json text. `position_override` forces the family when the file cannot tell.
ModelConfig parse_model_config(const std::string& json_text, const std::string& what,
                               std::optional<PositionEncoding> position_override = std::nullopt);
GenerationConfig parse_generation_config(const std::string& json_text, const std::string& what);

std::optional<PositionEncoding> parse_position_encoding(const std::string& name);  // "rope" | "alibi"

}  // namespace baichuan
