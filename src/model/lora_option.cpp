#include "model/lora_option.h"

#include <charconv>
#include <cmath>

#include "core/error.h"

namespace baichuan {

LoraOption parse_lora_option(const std::string& text) {
  LoraOption o{text, 1.0f};
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return o;
  const std::string tail = text.substr(colon + 1);
  double scale = 0;
  auto [end, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), scale);
  if (tail.empty() || ec != std::errc() || end != tail.data() + tail.size()) return o;  // a ':' inside the path
  if (!std::isfinite(scale)) fail("--lora ", text, ": the scale must be a finite number");
  if (colon == 0) fail("--lora ", text, ": no adapter path before the scale");
  return {text.substr(0, colon), static_cast<float>(scale)};
}

std::vector<ScaledLoraAdapter> read_lora_options(const std::vector<std::string>& options, const ModelConfig& config) {
  std::vector<ScaledLoraAdapter> adapters;
  for (const auto& text : options) {
    LoraOption o = parse_lora_option(text);
    adapters.push_back({read_lora_adapter(o.path, config), o.scale});
  }
  return adapters;
}

}  // namespace baichuan
