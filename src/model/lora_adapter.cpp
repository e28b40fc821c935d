// The adapter in memory: targets, shapes, scales, validation, and which format a path is read as.
#include "model/lora_adapter.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_adapter_formats.h"
#include "quant/type_traits.h"

namespace baichuan {

namespace lora_formats {

std::vector<float> lora_tensor_floats(const Tensor& t, const std::string& what) {
  const bool plain = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16;
  if (!plain && !(is_quantized(t.dtype) && t.shape.size() == 2))
    fail(what, ": tensor '", t.name, "' has type ", dtype_name(t.dtype), "; expected F32, F16 or BF16");
  const int64_t n = checked_numel(t.shape, t.name);
  std::vector<float> out(static_cast<size_t>(n));
  if (plain) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = load_float(t.dtype, t.data, static_cast<size_t>(i));
  } else {
    for (int64_t r = 0; r < t.shape[0]; ++r) load_row(t, r, out.data() + r * t.shape[1]);
  }
  for (float v : out)
    if (!std::isfinite(v)) fail(what, ": tensor '", t.name, "' holds a non-finite value (", v, ")");
  return out;
}

std::string lora_shape_str(std::vector<int64_t> shape) {
  Tensor t;
  t.shape = std::move(shape);
  return t.shape_str();
}

void lora_check_shape(const Tensor& t, const std::vector<int64_t>& expected, const std::string& what,
                      const std::string& why) {
  if (t.shape != expected)
    fail(what, ": tensor '", t.name, "' has shape ", t.shape_str(), ", expected ", lora_shape_str(expected), " (", why, ")");
}

void lora_sort_modules(std::vector<LoraModule>& modules) {
  std::sort(modules.begin(), modules.end(), [](const LoraModule& x, const LoraModule& y) {
    return std::pair(x.layer, static_cast<int>(x.target)) < std::pair(y.layer, static_cast<int>(y.target));
  });
}

}  // namespace lora_formats

using lora_formats::lora_shape_str;
using lora_formats::lora_target_parent;

const char* lora_target_name(LoraTarget target) {
  switch (target) {
    case LoraTarget::WPack: return "W_pack";
    case LoraTarget::OProj: return "o_proj";
    case LoraTarget::GateProj: return "gate_proj";
    case LoraTarget::UpProj: return "up_proj";
    case LoraTarget::DownProj: return "down_proj";
  }
  return "?";
}

std::optional<LoraTarget> parse_lora_target(const std::string& name) {
  for (LoraTarget t : kLoraTargets)
    if (name == lora_target_name(t)) return t;
  return std::nullopt;
}

std::vector<std::string> lora_gguf_roles(LoraTarget t) {
  switch (t) {
    case LoraTarget::WPack: return {"attn_q", "attn_k", "attn_v"};
    case LoraTarget::OProj: return {"attn_output"};
    case LoraTarget::GateProj: return {"ffn_gate"};
    case LoraTarget::UpProj: return {"ffn_up"};
    case LoraTarget::DownProj: return {"ffn_down"};
  }
  fail("unknown LoRA target");
}

std::string lora_module_path(int64_t layer, LoraTarget target) {
  return cat("model.layers.", layer, ".", lora_target_parent(target), ".", lora_target_name(target));
}

int64_t lora_in_features(const ModelConfig& c, LoraTarget target) {
  return target == LoraTarget::DownProj ? c.intermediate_size : c.hidden_size;
}

int64_t lora_out_features(const ModelConfig& c, LoraTarget target) {
  switch (target) {
    case LoraTarget::WPack: return 3 * c.hidden_size;
    case LoraTarget::GateProj:
    case LoraTarget::UpProj: return c.intermediate_size;
    default: return c.hidden_size;
  }
}

const LoraModule* LoraAdapter::find(int64_t layer, LoraTarget target) const {
  for (const auto& m : modules)
    if (m.layer == layer && m.target == target) return &m;
  return nullptr;
}

float lora_scale(double alpha, int64_t rank, bool use_rslora) {
  return static_cast<float>(use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank));
}

LoraAdapter read_lora_adapter(const std::string& path, const ModelConfig& config) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, ": no such file or directory (expected a PEFT adapter folder or a GGUF LoRA adapter)");
  if (path.ends_with(".gguf") && !fs::is_directory(path, ec)) return lora_formats::read_gguf_lora_adapter_file(path, config);
  return lora_formats::read_peft_adapter_folder(path, config);  // a PEFT folder, or one of its files
}

std::vector<std::string> lora_adapter_files(const std::string& path) {
  std::error_code ec;
  if (path.ends_with(".gguf") && !std::filesystem::is_directory(path, ec)) return {path};
  return lora_formats::peft_adapter_files(path);
}

void validate_lora_adapter(const LoraAdapter& adapter, const ModelConfig& config) {
  const std::string what = adapter.source.empty() ? std::string("LoRA adapter") : adapter.source;
  if (adapter.modules.empty()) fail(what, ": the adapter has no modules");
  for (size_t i = 0; i < adapter.modules.size(); ++i) {
    const LoraModule& m = adapter.modules[i];
    const std::string name = what + ": " + lora_module_path(m.layer, m.target);
    if (m.layer < 0 || m.layer >= config.num_layers) fail(name, ": layer ", m.layer, " is outside the model's ", config.num_layers);
    if (i > 0 && std::pair(adapter.modules[i - 1].layer, static_cast<int>(adapter.modules[i - 1].target)) >=
                     std::pair(m.layer, static_cast<int>(m.target)))
      fail(name, ": modules must be sorted by (layer, target) with one per pair");
    if (m.rank < 1) fail(name, ": rank ", m.rank, " must be at least 1");
    const int64_t in = lora_in_features(config, m.target), out = lora_out_features(config, m.target);
    if (m.a.size() != static_cast<size_t>(m.rank * in))
      fail(name, ": A holds ", m.a.size(), " values, expected ", lora_shape_str({m.rank, in}));
    if (m.b.size() != static_cast<size_t>(out * m.rank))
      fail(name, ": B holds ", m.b.size(), " values, expected ", lora_shape_str({out, m.rank}));
    const float expected = lora_scale(m.alpha, m.rank, adapter.config.use_rslora);
    if (!std::isfinite(m.scale) || std::abs(m.scale - expected) > 1e-6f * std::max(1.0f, std::abs(expected)))
      fail(name, ": scale ", m.scale, " is not lora_alpha / ", adapter.config.use_rslora ? "sqrt(r)" : "r", " = ", expected);
    for (const auto* v : {&m.a, &m.b})
      for (float x : *v)
        if (!std::isfinite(x)) fail(name, ": holds a non-finite value");
  }
}

}  // namespace baichuan
