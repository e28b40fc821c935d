// libFuzzer target for config.json and generation_config.json (the same input is read as both).
// Properties: a config that parses is valid (validate() accepts it) and holds the integer values the
// file states, not truncated ones; a generation config that parses has max_new_tokens >= 0.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_support.h"
#include "model/config.h"

namespace fuzz_model_config {

// The file's integer `key` when present (and an integer), else `fallback`.
int64_t stated(const nlohmann::json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

}  // namespace fuzz_model_config

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using fuzz_support::property_failed;
  const std::string text(fuzz_support::as_text(data, size));
  try {
    ModelConfig c = parse_model_config(text, "config.json");
    try {
      c.validate("config.json");
    } catch (const Error& e) {
      property_failed("parse_model_config returned a config validate() refuses: ", e.what());
    }
    auto j = nlohmann::json::parse(text, nullptr, false);
    using fuzz_model_config::stated;
    if (!j.is_discarded() && (stated(j, "bos_token_id", 1) != c.bos_token_id || stated(j, "eos_token_id", 2) != c.eos_token_id ||
        stated(j, "pad_token_id", 0) != c.pad_token_id || stated(j, "vocab_size", 0) != c.vocab_size ||
        stated(j, "num_hidden_layers", 0) != c.num_layers))
      property_failed("the config holds other integers than the file states");
  } catch (const Error&) {
  }
  try {
    GenerationConfig g = parse_generation_config(text, "generation_config.json");
    if (g.max_new_tokens < 0) property_failed("max_new_tokens ", g.max_new_tokens, " accepted");
    auto j = nlohmann::json::parse(text, nullptr, false);
    using fuzz_model_config::stated;
    if (!j.is_discarded() && (stated(j, "user_token_id", 195) != g.user_token_id || stated(j, "assistant_token_id", 196) != g.assistant_token_id ||
        stated(j, "eos_token_id", 2) != g.eos_token_id))
      property_failed("the generation config holds other token ids than the file states");
  } catch (const Error&) {
  }
  return 0;
}
