#include "model/lora_adapter.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/torch_bin.h"
#include "model/gguf_checkpoint.h"
#include "quant/type_traits.h"

namespace baichuan {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPeftConfigName = "adapter_config.json";
constexpr const char* kPeftSafetensorsName = "adapter_model.safetensors";
constexpr const char* kPeftBinName = "adapter_model.bin";
constexpr const char* kPeftPrefix = "base_model.model.";

// Pattern keys and regex target_modules are user text run through std::regex: bounded so that a
// crafted file cannot make matching take forever.
constexpr size_t kMaxPatternBytes = 256;

// The module path after kPeftPrefix: "model.layers.{i}.self_attn.W_pack" etc.
const char* lora_target_parent(LoraTarget t) { return t == LoraTarget::WPack || t == LoraTarget::OProj ? "self_attn" : "mlp"; }

std::regex lora_compile_regex(const std::string& pattern, const std::string& what) {
  if (pattern.size() > kMaxPatternBytes) fail(what, ": the pattern is longer than ", kMaxPatternBytes, " characters");
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail(what, ": '", pattern, "' is not a regular expression this reader understands (", e.what(), ")");
  }
}

bool lora_regex_full_match(const std::regex& re, const std::string& text, const std::string& what) {
  try {
    return std::regex_match(text, re);
  } catch (const std::regex_error& e) {
    fail(what, ": matching the pattern failed (", e.what(), ")");
  }
}

// The elements of a float tensor (F32/F16/BF16, or a GGUF block type) as float32.
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

// Checks a tensor's shape; the message names the file, the tensor, both shapes and the model.
void lora_check_shape(const Tensor& t, const std::vector<int64_t>& expected, const std::string& what,
                      const std::string& why) {
  if (t.shape != expected)
    fail(what, ": tensor '", t.name, "' has shape ", t.shape_str(), ", expected ", lora_shape_str(expected), " (", why, ")");
}

// ---- adapter_config.json -------------------------------------------------------------------------

struct PeftModuleRules {
  LoraAdapterConfig config;
  std::optional<std::regex> target_regex;
  std::optional<std::set<int64_t>> layers;  // layers_to_transform
};

bool lora_json_set(const nlohmann::json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

PeftModuleRules parse_peft_config(const std::string& text, const std::string& what) {
  const nlohmann::json j = parse_json_object(text, what);
  auto field_error = [&](const char* key, const std::string& problem) -> Error {
    return Error(cat(what, ": field '", key, "' ", problem));
  };
  auto number = [&](const char* key, double fallback) {
    if (!lora_json_set(j, key)) return fallback;
    if (!j[key].is_number()) throw field_error(key, "must be a number, got " + j[key].dump());
    double v = j[key].get<double>();
    if (!std::isfinite(v)) throw field_error(key, "must be finite");
    return v;
  };
  auto boolean = [&](const char* key) {
    if (!lora_json_set(j, key)) return false;
    if (!j[key].is_boolean()) throw field_error(key, "must be true or false, got " + j[key].dump());
    return j[key].get<bool>();
  };
  // What this engine cannot apply exactly is refused, not ignored.
  if (lora_json_set(j, "peft_type") && j["peft_type"] != "LORA")
    throw field_error("peft_type", "is " + j["peft_type"].dump() + "; only LORA adapters are supported");
  if (boolean("use_dora")) throw field_error("use_dora", "is true: DoRA adapters are not supported");
  if (lora_json_set(j, "modules_to_save"))
    throw field_error("modules_to_save", "is " + j["modules_to_save"].dump() +
                                             ": adapters that replace whole modules are not supported (must be null)");
  if (lora_json_set(j, "bias") && j["bias"] != "none")
    throw field_error("bias", "is " + j["bias"].dump() + ": adapters with biases are not supported (must be \"none\")");
  if (boolean("lora_bias")) throw field_error("lora_bias", "is true: adapters with biases are not supported");
  if (boolean("fan_in_fan_out"))
    throw field_error("fan_in_fan_out", "is true: Baichuan 2's linear layers are [out, in]; such an adapter is not for this model");
  for (const char* key : {"layer_replication", "trainable_token_indices", "target_parameters"})
    if (lora_json_set(j, key) && !(j[key].is_array() && j[key].empty()) && !(j[key].is_object() && j[key].empty()))
      throw field_error(key, "is set (" + j[key].dump().substr(0, 80) + "): not supported");

  PeftModuleRules rules;
  LoraAdapterConfig& c = rules.config;
  if (lora_json_set(j, "r")) {
    if (!j["r"].is_number_integer() || j["r"].get<int64_t>() < 1) throw field_error("r", "must be a positive integer, got " + j["r"].dump());
    c.r = j["r"].get<int64_t>();
  }
  c.lora_alpha = number("lora_alpha", 8);
  c.lora_dropout = number("lora_dropout", 0);
  c.use_rslora = boolean("use_rslora");
  if (lora_json_set(j, "base_model_name_or_path")) {
    if (!j["base_model_name_or_path"].is_string()) throw field_error("base_model_name_or_path", "must be a string");
    c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  }

  if (!lora_json_set(j, "target_modules")) throw field_error("target_modules", "is missing");
  const auto& targets = j["target_modules"];
  if (targets.is_string()) {
    c.target_modules_regex = targets.get<std::string>();
    if (c.target_modules_regex == "all-linear") {  // PEFT's shorthand: every linear layer but the output head
      c.target_modules_regex.clear();
      for (LoraTarget t : kLoraTargets) c.target_modules.push_back(lora_target_name(t));
    } else {
      rules.target_regex = lora_compile_regex(c.target_modules_regex, what + ": field 'target_modules'");
    }
  } else if (targets.is_array()) {
    for (const auto& t : targets) {
      if (!t.is_string()) throw field_error("target_modules", "must hold strings, got " + t.dump());
      std::string name = t.get<std::string>();
      const std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
      if (last == "embed_tokens" || last == "lm_head")
        throw field_error("target_modules", "names '" + name + "': embedding and lm_head adapters are not supported");
      if (!parse_lora_target(last))
        throw field_error("target_modules", "names '" + name +
                                                "', which is not a Baichuan 2 linear layer this engine adapts (W_pack, "
                                                "o_proj, gate_proj, up_proj, down_proj)");
      c.target_modules.push_back(std::move(name));
    }
  } else {
    throw field_error("target_modules", "must be a list of module names or a regex string, got " + targets.dump());
  }

  auto read_pattern = [&](const char* key, auto& out, bool integer) {
    if (!lora_json_set(j, key)) return;
    if (!j[key].is_object()) throw field_error(key, "must be an object, got " + j[key].dump());
    for (const auto& [k, v] : j[key].items()) {
      lora_compile_regex(k, what + ": field '" + key + "'");  // refused here rather than at the first match
      if (integer ? !v.is_number_integer() || v.template get<int64_t>() < 1 : !v.is_number())
        throw field_error(key, "has '" + k + "': " + v.dump() + ", expected " + (integer ? "a positive integer" : "a number"));
      out[k] = v.template get<typename std::decay_t<decltype(out)>::mapped_type>();
    }
  };
  read_pattern("rank_pattern", c.rank_pattern, true);
  read_pattern("alpha_pattern", c.alpha_pattern, false);

  if (lora_json_set(j, "layers_to_transform")) {
    const auto& l = j["layers_to_transform"];
    std::set<int64_t> layers;
    auto add = [&](const nlohmann::json& x) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0) throw field_error("layers_to_transform", "must hold layer indices, got " + x.dump());
      layers.insert(x.get<int64_t>());
    };
    if (l.is_array()) {
      for (const auto& x : l) add(x);
    } else {
      add(l);
    }
    rules.layers = std::move(layers);
  }
  return rules;
}

// PEFT's check_target_module_exists for our module paths.
bool peft_targets(const PeftModuleRules& rules, int64_t layer, LoraTarget target, const std::string& what) {
  if (rules.layers && !rules.layers->contains(layer)) return false;
  const std::string path = lora_module_path(layer, target);
  if (rules.target_regex) return lora_regex_full_match(*rules.target_regex, path, what + ": field 'target_modules'");
  for (const auto& t : rules.config.target_modules)
    if (path == t || path.ends_with("." + t)) return true;
  return false;
}

// "model.layers.12.self_attn.W_pack.lora_A.weight" -> layer, target, 'A'/'B'. Throws for names of
// adapters this engine does not apply; nullopt for names that are not LoRA tensors at all.
struct PeftTensorName {
  int64_t layer;
  LoraTarget target;
  char which;
};

PeftTensorName parse_peft_tensor_name(const std::string& full, const std::string& what) {
  auto refuse = [&](const std::string& why) -> Error { return Error(cat(what, ": tensor '", full, "': ", why)); };
  if (full.find("lora_magnitude_vector") != std::string::npos) throw refuse("a DoRA magnitude: DoRA adapters are not supported");
  if (full.find("lora_embedding_") != std::string::npos || full.find("embed_tokens") != std::string::npos ||
      full.find("lm_head") != std::string::npos)
    throw refuse("embedding and lm_head adapters are not supported");
  if (full.ends_with(".bias")) throw refuse("adapters with biases are not supported");
  if (!full.starts_with(kPeftPrefix)) throw refuse(cat("expected a name starting '", kPeftPrefix, "'"));
  std::string name = full.substr(std::char_traits<char>::length(kPeftPrefix));
  char which = 0;
  for (const char* suffix : {".lora_A.weight", ".lora_B.weight"})
    if (name.ends_with(suffix)) {
      which = suffix[6];
      name.resize(name.size() - std::char_traits<char>::length(suffix));
    }
  if (!which) throw refuse("not a LoRA tensor of this engine (expected <module>.lora_A.weight or .lora_B.weight)");
  const std::string prefix = "model.layers.";
  if (!name.starts_with(prefix)) throw refuse("not a LoRA tensor of a decoder layer");
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size();
  int64_t layer = -1;
  auto [dot, ec] = std::from_chars(begin, end, layer);
  if (ec != std::errc() || dot == begin || dot == end || *dot != '.') throw refuse("cannot read the layer index");
  const std::string module(dot + 1, end);
  for (LoraTarget t : kLoraTargets)
    if (module == std::string(lora_target_parent(t)) + "." + lora_target_name(t)) return {layer, t, which};
  throw refuse("module '" + module + "' is not a Baichuan 2 linear layer this engine adapts (W_pack, o_proj, gate_proj, "
               "up_proj, down_proj)");
}

void lora_sort_modules(std::vector<LoraModule>& modules) {
  std::sort(modules.begin(), modules.end(), [](const LoraModule& x, const LoraModule& y) {
    return std::pair(x.layer, static_cast<int>(x.target)) < std::pair(y.layer, static_cast<int>(y.target));
  });
}

LoraAdapter build_peft_adapter(const std::string& config_json, const std::string& config_what,
                               const std::vector<Tensor>& tensors, const std::string& weights_what,
                               const ModelConfig& model) {
  PeftModuleRules rules = parse_peft_config(config_json, config_what);
  LoraAdapter adapter;
  adapter.config = rules.config;
  std::map<std::pair<int64_t, LoraTarget>, std::pair<const Tensor*, const Tensor*>> found;  // A, B
  for (const Tensor& t : tensors) {
    PeftTensorName n = parse_peft_tensor_name(t.name, weights_what);
    if (n.layer >= model.num_layers)
      fail(weights_what, ": tensor '", t.name, "' is for layer ", n.layer, " but the model has ", model.num_layers, " layers");
    if (!peft_targets(rules, n.layer, n.target, config_what))
      fail(weights_what, ": tensor '", t.name, "' adapts ", lora_module_path(n.layer, n.target), ", which ", config_what,
           " does not target (target_modules / layers_to_transform)");
    auto& slot = found[{n.layer, n.target}];
    (n.which == 'A' ? slot.first : slot.second) = &t;
  }
  std::vector<std::string> rank_keys, alpha_keys;
  for (const auto& [k, v] : rules.config.rank_pattern) rank_keys.push_back(k);
  for (const auto& [k, v] : rules.config.alpha_pattern) alpha_keys.push_back(k);
  for (int64_t layer = 0; layer < model.num_layers; ++layer)
    for (LoraTarget target : kLoraTargets) {
      if (!peft_targets(rules, layer, target, config_what)) continue;
      const std::string path = lora_module_path(layer, target);
      auto it = found.find({layer, target});
      const std::string base = kPeftPrefix + path;
      if (it == found.end() || !it->second.first || !it->second.second)
        fail(weights_what, ": tensor '", base, (it == found.end() || !it->second.first ? ".lora_A" : ".lora_B"),
             ".weight' is missing (", config_what, " targets ", path, ")");
      LoraModule m;
      m.layer = layer;
      m.target = target;
      auto rk = lora_pattern_key(rank_keys, path);
      auto ak = lora_pattern_key(alpha_keys, path);
      m.rank = rk ? rules.config.rank_pattern.at(*rk) : rules.config.r;
      m.alpha = ak ? rules.config.alpha_pattern.at(*ak) : rules.config.lora_alpha;
      m.scale = lora_scale(m.alpha, m.rank, rules.config.use_rslora);
      const int64_t in = lora_in_features(model, target), out = lora_out_features(model, target);
      const std::string why = cat("r ", m.rank, rk ? " from rank_pattern '" + *rk + "'" : std::string(" (field 'r')"),
                                  ", model hidden_size ", model.hidden_size, ", intermediate_size ", model.intermediate_size);
      lora_check_shape(*it->second.first, {m.rank, in}, weights_what, why);
      lora_check_shape(*it->second.second, {out, m.rank}, weights_what, why);
      m.a = lora_tensor_floats(*it->second.first, weights_what);
      m.b = lora_tensor_floats(*it->second.second, weights_what);
      adapter.modules.push_back(std::move(m));
    }
  if (adapter.modules.empty()) fail(config_what, ": the adapter targets no module of this model");
  lora_sort_modules(adapter.modules);
  adapter.num_layers = model.num_layers;
  return adapter;
}

// ---- GGUF LoRA -----------------------------------------------------------------------------------

// llama.cpp's scale for a GGUF LoRA tensor pair: alpha / rank, or 1 when the file's alpha is 0.
float gguf_lora_scale(double alpha, int64_t rank) { return alpha == 0 ? 1.0f : static_cast<float>(alpha / rank); }

LoraAdapter build_gguf_lora_adapter(const gguf::File& f, const ModelConfig& model) {
  const std::string& path = f.path;
  auto string_key = [&](const char* key, const char* expected) {
    const std::string& v = f.get(key).as_string(path + ": " + key);
    if (v != expected) fail(path, ": ", key, " is '", v, "', expected '", expected, "'");
  };
  string_key("general.type", "adapter");
  string_key("adapter.type", "lora");
  string_key("general.architecture", "baichuan");
  const double alpha = f.get("adapter.lora.alpha").as_float(path + ": adapter.lora.alpha");
  if (!std::isfinite(alpha)) fail(path, ": adapter.lora.alpha is not finite");

  // blk.N.<role>.weight.lora_{a,b} -> (layer, role)
  std::map<std::pair<int64_t, std::string>, std::pair<const Tensor*, const Tensor*>> found;
  for (const Tensor& t : f.tensors) {
    const std::string& name = t.name;
    auto refuse = [&](const std::string& why) -> Error { return Error(cat(path, ": tensor '", name, "': ", why)); };
    if (name.starts_with("token_embd") || name.starts_with("output.") || name.starts_with("output_norm"))
      throw refuse("embedding and output adapters are not supported");
    char which = name.ends_with(".weight.lora_a") ? 'a' : name.ends_with(".weight.lora_b") ? 'b' : 0;
    if (!which || !name.starts_with("blk.")) throw refuse("not a LoRA tensor (expected blk.N.<tensor>.weight.lora_a / .lora_b)");
    const char* begin = name.data() + 4;
    const char* end = name.data() + name.size() - std::char_traits<char>::length(".weight.lora_a");
    int64_t layer = -1;
    auto [dot, ec] = std::from_chars(begin, end, layer);
    if (ec != std::errc() || dot == begin || dot >= end || *dot != '.') throw refuse("cannot read the layer index");
    if (layer >= model.num_layers) throw refuse(cat("layer ", layer, " is beyond the model's ", model.num_layers, " layers"));
    std::string role(dot + 1, end);
    bool known = false;
    for (LoraTarget t2 : kLoraTargets)
      for (const auto& r : lora_gguf_roles(t2)) known = known || r == role;
    if (!known) throw refuse("'" + role + "' is not a Baichuan 2 linear layer this engine adapts");
    auto& slot = found[{layer, role}];
    (which == 'a' ? slot.first : slot.second) = &t;
  }

  LoraAdapter adapter;
  adapter.config.lora_alpha = alpha;
  const int64_t head_dim = model.head_dim();
  std::set<std::string> targets;
  for (int64_t layer = 0; layer < model.num_layers; ++layer)
    for (LoraTarget target : kLoraTargets) {
      const int64_t in = lora_in_features(model, target), out = lora_out_features(model, target);
      struct Piece {
        int64_t rank, rows, row0;
        std::vector<float> a, b;
        float scale;
      };
      std::vector<Piece> pieces;
      const auto roles = lora_gguf_roles(target);
      const int64_t piece_rows = out / static_cast<int64_t>(roles.size());
      for (size_t i = 0; i < roles.size(); ++i) {
        auto it = found.find({layer, roles[i]});
        if (it == found.end()) continue;
        const std::string base = layer_tensor(layer, roles[i]);
        if (!it->second.first || !it->second.second)
          fail(path, ": tensor '", base, it->second.first ? ".lora_b" : ".lora_a", "' is missing");
        const Tensor& ta = *it->second.first;
        const Tensor& tb = *it->second.second;
        if (ta.shape.size() != 2 || ta.shape[0] < 1)
          fail(path, ": tensor '", ta.name, "' has shape ", ta.shape_str(), ", expected [rank, ", in, "]");
        const int64_t rank = ta.shape[0];
        const std::string why = cat("rank ", rank, ", model hidden_size ", model.hidden_size, ", intermediate_size ",
                                    model.intermediate_size);
        lora_check_shape(ta, {rank, in}, path, why);
        lora_check_shape(tb, {piece_rows, rank}, path, why);
        Piece p{rank, piece_rows, static_cast<int64_t>(i) * piece_rows, lora_tensor_floats(ta, path), {}, 0};
        p.scale = gguf_lora_scale(alpha, rank);
        std::vector<float> b = lora_tensor_floats(tb, path);
        p.b = b;
        if (roles[i] == "attn_q" || roles[i] == "attn_k")  // undo the interleaved-pair row order of GGUF Q/K
          for (int64_t r = 0; r < piece_rows; ++r)
            std::copy_n(b.data() + r * rank, rank, p.b.data() + rotate_half_row(r, head_dim) * rank);
        pieces.push_back(std::move(p));
      }
      if (pieces.empty()) continue;
      targets.insert(lora_target_name(target));
      LoraModule m;
      m.layer = layer;
      m.target = target;
      const bool one_a = pieces.size() == roles.size() &&
                         std::all_of(pieces.begin(), pieces.end(), [&](const Piece& p) { return p.a == pieces[0].a; });
      if (one_a) {  // as convert_lora_to_gguf.py splits a PEFT W_pack adapter: one A, B in row blocks
        m.rank = pieces[0].rank;
        m.a = pieces[0].a;
        for (const Piece& p : pieces) m.b.insert(m.b.end(), p.b.begin(), p.b.end());
      } else {  // independent adapters per piece: A stacked, B block-diagonal, each piece's scale kept
        for (const Piece& p : pieces) m.rank += p.rank;
        m.b.assign(static_cast<size_t>(out * m.rank), 0.0f);
        int64_t k0 = 0;
        const float total_scale = gguf_lora_scale(alpha, m.rank);
        for (const Piece& p : pieces) {
          m.a.insert(m.a.end(), p.a.begin(), p.a.end());
          const float fold = p.scale / total_scale;
          for (int64_t r = 0; r < p.rows; ++r)
            for (int64_t k = 0; k < p.rank; ++k) {
              const float v = p.b[static_cast<size_t>(r * p.rank + k)] * fold;
              if (!std::isfinite(v))  // a huge finite value times the pieces' scale ratio
                fail(path, ": layer ", m.layer, " W_pack: a lora_b value times its scale ratio (", fold,
                     ") overflows float32");
              m.b[static_cast<size_t>((p.row0 + r) * m.rank + k0 + k)] = v;
            }
          k0 += p.rank;
        }
      }
      // llama.cpp: alpha 0 means scale 1, which PEFT expresses as alpha = rank.
      m.alpha = alpha == 0 ? static_cast<double>(m.rank) : alpha;
      m.scale = gguf_lora_scale(alpha, m.rank);
      adapter.modules.push_back(std::move(m));
    }
  if (adapter.modules.empty()) fail(path, ": the adapter holds no LoRA tensors");
  adapter.config.target_modules.assign(targets.begin(), targets.end());
  adapter.config.r = adapter.modules[0].rank;
  if (alpha == 0) adapter.config.lora_alpha = static_cast<double>(adapter.config.r);
  lora_sort_modules(adapter.modules);
  adapter.num_layers = model.num_layers;
  return adapter;
}

bool lora_ends_with(const std::string& s, const std::string& suffix) { return s.ends_with(suffix); }

}  // namespace

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

std::optional<std::string> lora_pattern_key(const std::vector<std::string>& keys, const std::string& module_path) {
  for (const auto& key : keys) {
    const std::regex re = lora_compile_regex("(.*\\.)?(" + key + ")", "pattern key '" + key + "'");
    if (lora_regex_full_match(re, module_path, "pattern key '" + key + "'")) return key;
  }
  return std::nullopt;
}

LoraAdapter parse_peft_adapter(const std::string& config_json, const std::byte* safetensors, size_t size,
                               const std::string& path, const ModelConfig& config) {
  const std::string weights = path + "/" + kPeftSafetensorsName;
  auto tensors = formats::parse_safetensors(safetensors, size, nullptr, weights);
  LoraAdapter adapter = build_peft_adapter(config_json, path + "/" + kPeftConfigName, tensors, weights, config);
  adapter.source = path;
  return adapter;
}

LoraAdapter parse_gguf_lora_adapter(const std::byte* data, size_t size, const std::string& path, const ModelConfig& config) {
  LoraAdapter adapter = build_gguf_lora_adapter(gguf::read_memory(data, size, nullptr, path), config);
  adapter.source = path;
  return adapter;
}

LoraAdapter read_lora_adapter(const std::string& path, const ModelConfig& config) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, ": no such file or directory (expected a PEFT adapter folder or a GGUF LoRA adapter)");
  if (lora_ends_with(path, ".gguf") && !fs::is_directory(path, ec)) {
    LoraAdapter adapter = build_gguf_lora_adapter(gguf::read_file(path), config);
    adapter.source = path;
    return adapter;
  }
  // A PEFT folder, or one of its files.
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  const std::string folder = dir.empty() ? "." : dir;
  const std::string config_path = folder + "/" + kPeftConfigName;
  if (!file_exists(config_path)) fail(path, ": not a LoRA adapter: no ", kPeftConfigName, " in ", folder, " and not a .gguf file");
  const std::string st = folder + "/" + kPeftSafetensorsName, bin = folder + "/" + kPeftBinName;
  std::string weights;
  if (lora_ends_with(path, ".safetensors") || lora_ends_with(path, ".bin"))
    weights = path;
  else
    weights = file_exists(st) ? st : bin;
  if (!file_exists(weights)) fail(folder, ": neither ", kPeftSafetensorsName, " nor ", kPeftBinName, " is there");
  auto tensors = lora_ends_with(weights, ".bin") ? formats::read_torch_bin(weights) : formats::read_safetensors(weights);
  LoraAdapter adapter = build_peft_adapter(read_text_file(config_path), config_path, tensors, weights, config);
  adapter.source = path;
  return adapter;
}

std::vector<std::string> lora_adapter_files(const std::string& path) {
  std::error_code ec;
  if (lora_ends_with(path, ".gguf") && !fs::is_directory(path, ec)) return {path};
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  const std::string folder = dir.empty() ? "." : dir;
  return {path, folder + "/" + kPeftConfigName, folder + "/" + kPeftSafetensorsName, folder + "/" + kPeftBinName};
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

void write_peft_adapter(const std::string& dir, const LoraAdapter& adapter) {
  const LoraAdapterConfig& c = adapter.config;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) fail(dir, ": cannot create the adapter folder", ec ? ": " + ec.message() : std::string());
  if (adapter.modules.empty()) fail(dir, ": the adapter has no modules to write");

  // target_modules from the modules themselves: short names when every layer has the target (the
  // usual case), else the full module paths, so the reader expects exactly the tensors written.
  std::map<LoraTarget, std::set<int64_t>> layers_of;
  int64_t layer_count = adapter.num_layers;
  for (const auto& m : adapter.modules) {
    if (m.rank < 1 || m.a.size() % static_cast<size_t>(m.rank) != 0 || m.b.size() % static_cast<size_t>(m.rank) != 0)
      fail(dir, ": ", lora_module_path(m.layer, m.target), ": A and B do not hold whole rows of rank ", m.rank);
    if (!layers_of[m.target].insert(m.layer).second)
      fail(dir, ": ", lora_module_path(m.layer, m.target), " is given twice");
    if (adapter.num_layers == 0) layer_count = std::max(layer_count, m.layer + 1);
  }
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& [target, layers] : layers_of) {
    const bool every_layer = static_cast<int64_t>(layers.size()) == layer_count;
    if (every_layer) {
      targets.push_back(lora_target_name(target));
    } else {
      for (int64_t l : layers) targets.push_back(lora_module_path(l, target));
    }
  }
  // rank_pattern / alpha_pattern for modules that differ from (r, lora_alpha), keyed by full path.
  nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();
  auto json_number = [](double x) {
    return x == std::floor(x) && std::abs(x) < 1e15 ? nlohmann::json(static_cast<int64_t>(x)) : nlohmann::json(x);
  };
  for (const auto& m : adapter.modules) {
    if (m.rank != c.r) rank_pattern[lora_module_path(m.layer, m.target)] = m.rank;
    if (m.alpha != c.lora_alpha) alpha_pattern[lora_module_path(m.layer, m.target)] = json_number(m.alpha);
  }
  nlohmann::json j = {
      {"alpha_pattern", alpha_pattern},
      {"auto_mapping", nullptr},
      {"base_model_name_or_path", c.base_model_name_or_path},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"layer_replication", nullptr},
      {"layers_pattern", nullptr},
      {"layers_to_transform", nullptr},
      {"loftq_config", nlohmann::json::object()},
      {"lora_alpha", json_number(c.lora_alpha)},
      {"lora_dropout", json_number(c.lora_dropout)},
      {"megatron_config", nullptr},
      {"megatron_core", "megatron.core"},
      {"modules_to_save", nullptr},
      {"peft_type", "LORA"},
      {"r", c.r},
      {"rank_pattern", rank_pattern},
      {"revision", nullptr},
      {"target_modules", targets},
      {"task_type", "CAUSAL_LM"},
      {"use_dora", false},
      {"use_rslora", c.use_rslora},
  };
  // Python's json.dumps(indent=2, sort_keys=True): nlohmann objects are sorted maps; ASCII escapes.
  const std::string text = j.dump(2, ' ', true);

  std::vector<Tensor> tensors;
  for (const auto& m : adapter.modules) {
    const std::string base = std::string(kPeftPrefix) + lora_module_path(m.layer, m.target);
    const int64_t in = static_cast<int64_t>(m.a.size()) / std::max<int64_t>(m.rank, 1);
    const int64_t out = static_cast<int64_t>(m.b.size()) / std::max<int64_t>(m.rank, 1);
    for (auto [suffix, values, shape] : {std::tuple{".lora_A.weight", &m.a, std::vector<int64_t>{m.rank, in}},
                                         std::tuple{".lora_B.weight", &m.b, std::vector<int64_t>{out, m.rank}}}) {
      Tensor t;
      t.name = base + suffix;
      t.dtype = DType::F32;
      t.shape = shape;
      t.data = reinterpret_cast<const std::byte*>(values->data());
      t.nbytes = values->size() * sizeof(float);
      tensors.push_back(std::move(t));
    }
  }
  formats::write_safetensors(dir + "/" + kPeftSafetensorsName, tensors);
  AtomicFile config_file(dir + "/" + kPeftConfigName);
  config_file.write(text);
  config_file.commit();
}

void write_gguf_lora_adapter(const std::string& path, const LoraAdapter& adapter, const ModelConfig& config, DType type) {
  if (type != DType::F32 && type != DType::F16) fail(path, ": a GGUF LoRA adapter is written as F32 or F16, not ", dtype_name(type));
  validate_lora_adapter(adapter, config);
  const double alpha = adapter.config.lora_alpha;
  std::vector<gguf::KeyValue> meta = {
      {"general.architecture", gguf::Value::str("baichuan")},
      {"general.type", gguf::Value::str("adapter")},
      {"general.file_type", gguf::Value::u32(type == DType::F32 ? 0 : 1)},
      {"adapter.type", gguf::Value::str("lora")},
      {"adapter.lora.alpha", gguf::Value::f32(static_cast<float>(alpha))},
  };
  if (!adapter.config.base_model_name_or_path.empty())
    meta.push_back({"general.name", gguf::Value::str(adapter.config.base_model_name_or_path)});
  const int64_t head_dim = config.head_dim();
  std::vector<gguf::TensorToWrite> out;
  for (const auto& m : adapter.modules) {
    const auto roles = lora_gguf_roles(m.target);
    const int64_t in = lora_in_features(config, m.target);
    const int64_t piece_rows = lora_out_features(config, m.target) / static_cast<int64_t>(roles.size());
    // llama.cpp scales by alpha / rank; whatever differs (rsLoRA, patterns) goes into B.
    const float fold = m.scale / gguf_lora_scale(alpha, m.rank);
    for (size_t i = 0; i < roles.size(); ++i) {
      const std::string base = layer_tensor(m.layer, roles[i]);
      const bool permute = roles[i] == "attn_q" || roles[i] == "attn_k";
      const int64_t row0 = static_cast<int64_t>(i) * piece_rows, rank = m.rank;
      const std::vector<float>* a = &m.a;
      const std::vector<float>* b = &m.b;
      out.push_back({base + ".lora_a", type, {rank, in}, [a, type](std::byte* dst, size_t) {
                       quant::from_float_row(type, a->data(), dst, static_cast<int64_t>(a->size()));
                     }});
      out.push_back({base + ".lora_b", type, {piece_rows, rank},
                     [b, type, permute, row0, rank, piece_rows, head_dim, fold](std::byte* dst, size_t) {
                       std::vector<float> rows(static_cast<size_t>(piece_rows * rank));
                       for (int64_t r = 0; r < piece_rows; ++r) {
                         const int64_t src = row0 + (permute ? rotate_half_row(r, head_dim) : r);
                         for (int64_t k = 0; k < rank; ++k)
                           rows[static_cast<size_t>(r * rank + k)] = (*b)[static_cast<size_t>(src * rank + k)] * fold;
                       }
                       quant::from_float_row(type, rows.data(), dst, piece_rows * rank);
                     }});
    }
  }
  gguf::write_file(path, meta, out);
}

}  // namespace baichuan
