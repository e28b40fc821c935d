#include "model/config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace baichuan {

namespace {

using nlohmann::json;

int64_t get_int(const json& j, const char* key, const std::string& what, std::optional<int64_t> fallback = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail(what, ": missing field '", key, "'");
  }
  if (!it->is_number_integer()) fail(what, ": field '", key, "' must be an integer, got ", it->dump());
  return it->get<int64_t>();
}

// A token id: any integer the file states must fit int32 unchanged (a huge value would otherwise wrap
// into the vocabulary's range silently).
int32_t get_token_id(const json& j, const char* key, const std::string& what, int32_t fallback) {
  const int64_t id = get_int(j, key, what, fallback);
  if (id < 0 || id > std::numeric_limits<int32_t>::max())
    fail(what, ": field '", key, "' is ", id, ", not a token id (0 to ", std::numeric_limits<int32_t>::max(), ")");
  return static_cast<int32_t>(id);
}

double get_number(const json& j, const char* key, const std::string& what, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail(what, ": field '", key, "' must be a number, got ", it->dump());
  return it->get<double>();
}

}  // namespace

void ModelConfig::validate(const std::string& what, const ConfigFieldNames& names) const {
  auto in_range = [&](int64_t v, const std::string& name, int64_t limit) {
    if (v <= 0) fail(what, ": ", name, " must be positive, got ", v);
    if (v > limit) fail(what, ": ", name, " is ", v, ", more than the supported ", limit, " (a corrupted or crafted file?)");
  };
  in_range(vocab_size, names.vocab_size, ConfigLimits::kMaxVocab);
  in_range(hidden_size, names.hidden_size, ConfigLimits::kMaxHidden);
  in_range(intermediate_size, names.intermediate_size, ConfigLimits::kMaxIntermediate);
  in_range(num_heads, names.num_heads, hidden_size);
  in_range(num_layers, names.num_layers, ConfigLimits::kMaxLayers);
  in_range(model_max_length, names.model_max_length, ConfigLimits::kMaxContext);
  if (hidden_size % num_heads != 0)
    fail(what, ": ", names.hidden_size, " ", hidden_size, " is not divisible by ", names.num_heads, " ", num_heads);
  if (position == PositionEncoding::Rope && head_dim() % 2 != 0)
    fail(what, ": head dimension ", head_dim(), " must be even for rotary embeddings");
  auto positive_finite = [&](float v, const std::string& name) {
    if (!(v > 0) || !std::isfinite(v)) fail(what, ": ", name, " must be a positive finite number, got ", v);
  };
  positive_finite(rms_norm_eps, names.rms_norm_eps);
  if (position == PositionEncoding::Rope) positive_finite(rope_theta, names.rope_theta);
  if (position == PositionEncoding::Alibi) positive_finite(max_alibi_bias, names.max_alibi_bias);
  for (int32_t id : {bos_token_id, eos_token_id, pad_token_id})
    if (id < 0 || id >= vocab_size) fail(what, ": special token id ", id, " is outside the vocabulary");
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& what,
                               std::optional<PositionEncoding> position_override) {
  json j = parse_json_object(json_text, what);
  ModelConfig c;
  c.vocab_size = get_int(j, "vocab_size", what);
  c.hidden_size = get_int(j, "hidden_size", what);
  c.intermediate_size = get_int(j, "intermediate_size", what);
  c.num_heads = get_int(j, "num_attention_heads", what);
  c.num_layers = get_int(j, "num_hidden_layers", what);
  c.rms_norm_eps = static_cast<float>(get_number(j, "rms_norm_eps", what, 1e-6));
  bool has_max_pos = j.contains("max_position_embeddings");
  c.model_max_length = get_int(j, "model_max_length", what,
                               has_max_pos ? std::optional<int64_t>(get_int(j, "max_position_embeddings", what))
                                           : std::optional<int64_t>(4096));
  c.position = position_override.value_or(has_max_pos ? PositionEncoding::Rope : PositionEncoding::Alibi);
  c.bos_token_id = get_token_id(j, "bos_token_id", what, 1);
  c.eos_token_id = get_token_id(j, "eos_token_id", what, 2);
  c.pad_token_id = get_token_id(j, "pad_token_id", what, 0);
  // Fields other models use that Baichuan 2 does not support: refuse rather than silently ignore.
  if (auto it = j.find("hidden_act"); it != j.end() && *it != "silu")
    fail(what, ": hidden_act ", it->dump(), " is not supported (Baichuan 2 uses \"silu\")");
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && *it != false)
    fail(what, ": tie_word_embeddings ", it->dump(), " is not supported (Baichuan 2 has its own lm_head)");
  c.z_loss_weight = get_number(j, "z_loss_weight", what, 0.0);
  c.validate(what);
  return c;
}

GenerationConfig parse_generation_config(const std::string& json_text, const std::string& what) {
  json j = parse_json_object(json_text, what);
  GenerationConfig g;
  g.max_new_tokens = get_int(j, "max_new_tokens", what, g.max_new_tokens);
  g.temperature = static_cast<float>(get_number(j, "temperature", what, g.temperature));
  g.top_k = get_int(j, "top_k", what, g.top_k);
  g.top_p = static_cast<float>(get_number(j, "top_p", what, g.top_p));
  g.repetition_penalty = static_cast<float>(get_number(j, "repetition_penalty", what, g.repetition_penalty));
  if (auto it = j.find("do_sample"); it != j.end()) {
    if (!it->is_boolean()) fail(what, ": field 'do_sample' must be true or false, got ", it->dump());
    g.do_sample = it->get<bool>();
  }
  g.user_token_id = get_token_id(j, "user_token_id", what, g.user_token_id);
  g.assistant_token_id = get_token_id(j, "assistant_token_id", what, g.assistant_token_id);
  g.eos_token_id = get_token_id(j, "eos_token_id", what, g.eos_token_id);
  if (g.max_new_tokens < 0) fail(what, ": max_new_tokens must be >= 0, got ", g.max_new_tokens);
  return g;
}

std::optional<PositionEncoding> parse_position_encoding(const std::string& name) {
  if (name == "rope") return PositionEncoding::Rope;
  if (name == "alibi") return PositionEncoding::Alibi;
  return std::nullopt;
}

}  // namespace baichuan
