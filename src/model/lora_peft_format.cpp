// The PEFT adapter folder: adapter_config.json + adapter_model.safetensors (or adapter_model.bin, as
// PEFT before 0.6 saved it), read as PEFT applies it and written as PEFT writes it.
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
#include "formats/safetensors.h"
#include "formats/torch_bin.h"
#include "model/lora_adapter.h"
#include "model/lora_adapter_formats.h"

namespace baichuan {

namespace fs = std::filesystem;
using namespace lora_formats;

namespace {

constexpr const char* kPeftConfigName = "adapter_config.json";
constexpr const char* kPeftSafetensorsName = "adapter_model.safetensors";
constexpr const char* kPeftBinName = "adapter_model.bin";
constexpr const char* kPeftPrefix = "base_model.model.";

// Pattern keys and regex target_modules are user text run through std::regex: bounded so that a
// crafted file cannot make matching take forever.
constexpr size_t kMaxPatternBytes = 256;

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

}  // namespace

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

namespace lora_formats {

LoraAdapter read_peft_adapter_folder(const std::string& path, const ModelConfig& config) {
  std::error_code ec;
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  const std::string folder = dir.empty() ? "." : dir;
  const std::string config_path = folder + "/" + kPeftConfigName;
  if (!file_exists(config_path)) fail(path, ": not a LoRA adapter: no ", kPeftConfigName, " in ", folder, " and not a .gguf file");
  const std::string st = folder + "/" + kPeftSafetensorsName, bin = folder + "/" + kPeftBinName;
  std::string weights;
  if (path.ends_with(".safetensors") || path.ends_with(".bin"))
    weights = path;
  else
    weights = file_exists(st) ? st : bin;
  if (!file_exists(weights)) fail(folder, ": neither ", kPeftSafetensorsName, " nor ", kPeftBinName, " is there");
  auto tensors = weights.ends_with(".bin") ? formats::read_torch_bin(weights) : formats::read_safetensors(weights);
  LoraAdapter adapter = build_peft_adapter(read_text_file(config_path), config_path, tensors, weights, config);
  adapter.source = path;
  return adapter;
}

std::vector<std::string> peft_adapter_files(const std::string& path) {
  std::error_code ec;
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  const std::string folder = dir.empty() ? "." : dir;
  return {path, folder + "/" + kPeftConfigName, folder + "/" + kPeftSafetensorsName, folder + "/" + kPeftBinName};
}

}  // namespace lora_formats

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

}  // namespace baichuan
