#include "model/checkpoint.h"

#include <filesystem>
#include <charconv>
#include <optional>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/bnb_nf4.h"
#include "formats/gguf.h"
#include "formats/hf_folder.h"
#include "formats/mindspore_ckpt.h"
#include "formats/safetensors.h"
#include "formats/torch_bin.h"
#include "model/gguf_checkpoint.h"
#include "quant/dequantize.h"

namespace baichuan {

namespace fs = std::filesystem;

std::string layer_tensor(int64_t layer, const std::string& role) {
  return "blk." + std::to_string(layer) + "." + role + ".weight";
}

const Tensor& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail(path, ": tensor '", name, "' is missing");
  return it->second;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "model.layers.12.mlp.up_proj.weight" -> {12, "mlp.up_proj"}; nullopt for any other name.
std::optional<std::pair<int64_t, std::string>> parse_layer_name(const std::string& name) {
  const std::string prefix = "model.layers.", suffix = ".weight";
  if (!name.starts_with(prefix) || !name.ends_with(suffix)) return std::nullopt;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size() - suffix.size();
  int64_t layer = 0;
  auto [dot, ec] = std::from_chars(begin, end, layer);
  if (ec != std::errc() || dot == begin || dot >= end || *dot != '.' || layer < 0) return std::nullopt;
  return std::pair{layer, std::string(dot + 1, end)};
}

// A view of rows [begin, begin + count) of a 2-D tensor, sharing its memory.
Tensor row_slice(const Tensor& t, int64_t begin, int64_t count, std::string name) {
  Tensor s = t;
  size_t row_bytes = bytes_for(t.dtype, t.shape[1], t.name);
  s.name = std::move(name);
  s.shape = {count, t.shape[1]};
  s.data = t.data + static_cast<size_t>(begin) * row_bytes;
  s.nbytes = static_cast<size_t>(count) * row_bytes;
  return s;
}

void add(Checkpoint& c, const std::string& name, Tensor t) {
  t.name = name;
  c.tensors[name] = std::move(t);
}

// The load line's note on 4-bit weights (formats/bnb_nf4.h): how many matrices stay NF4.
std::string describe_nf4_weights(const Checkpoint& c, const std::string& config_path) {
  int64_t nf4 = 0;
  for (const auto& [name, t] : c.tensors) nf4 += t.dtype == DType::NF4;
  return formats::describe_bnb_nf4_load(nf4, config_path);
}

// How a source names the tensors: whole-model tensors in full, layer tensors by their part after
// "model.layers.N.". Each maps to the canonical (GGUF) name.
struct SourceNaming {
  std::map<std::string, std::string> model, layer_parts;
};

// Renames the tensors `naming` knows and drops the rest (buffers such as rotary caches).
// `take_layer_tensor(layer, part, tensor)` may claim a layer tensor first: it returns true when it did.
template <typename TakeLayerTensor>
void map_names(Checkpoint& c, std::vector<Tensor> tensors, const SourceNaming& naming,
               TakeLayerTensor take_layer_tensor) {
  for (auto& t : tensors) {
    if (auto whole = naming.model.find(t.name); whole != naming.model.end()) {
      add(c, whole->second, std::move(t));
    } else if (auto parsed = parse_layer_name(t.name)) {
      if (take_layer_tensor(parsed->first, parsed->second, t)) continue;
      if (auto role = naming.layer_parts.find(parsed->second); role != naming.layer_parts.end())
        add(c, layer_tensor(parsed->first, role->second), std::move(t));
    }
  }
}

// Hugging Face names -> canonical; W_pack is split into Q, K, V row views (rows Q, then K, then V).
void map_hf_names(Checkpoint& c, std::vector<Tensor> tensors, const std::string& source) {
  static const SourceNaming naming = {
      {{"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
       {"lm_head.weight", "output.weight"}},
      {{"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},
       {"mlp.down_proj", "ffn_down"},       {"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"}}};
  const int64_t hidden = c.config.hidden_size;
  map_names(c, std::move(tensors), naming, [&](int64_t layer, const std::string& part, const Tensor& t) {
    if (part != "self_attn.W_pack") return false;
    if (t.shape != std::vector<int64_t>{3 * hidden, hidden})
      fail(source, ": tensor '", t.name, "' has shape ", t.shape_str(), ", expected [", 3 * hidden, ", ", hidden, "]");
    add(c, layer_tensor(layer, "attn_q"), row_slice(t, 0, hidden, ""));
    add(c, layer_tensor(layer, "attn_k"), row_slice(t, hidden, hidden, ""));
    add(c, layer_tensor(layer, "attn_v"), row_slice(t, 2 * hidden, hidden, ""));
    return true;
  });
}

// MindFormers names -> canonical.
void map_mindspore_names(Checkpoint& c, std::vector<Tensor> tensors) {
  static const SourceNaming naming = {
      {{"model.tok_embeddings.embedding_weight", "token_embd.weight"}, {"model.norm_out.weight", "output_norm.weight"},
       {"lm_head.weight", "output.weight"}},
      {{"attention.wq", "attn_q"},     {"attention.wk", "attn_k"},     {"attention.wv", "attn_v"},
       {"attention.wo", "attn_output"}, {"feed_forward.w1", "ffn_gate"}, {"feed_forward.w3", "ffn_up"},
       {"feed_forward.w2", "ffn_down"}, {"attention_norm", "attn_norm"}, {"ffn_norm", "ffn_norm"}}};
  map_names(c, std::move(tensors), naming, [](int64_t, const std::string&, const Tensor&) { return false; });
}

void read_generation_config(Checkpoint& c, const std::string& folder) {
  std::string path = (fs::path(folder) / "generation_config.json").string();
  if (!file_exists(path)) return;  // the official defaults stand
  c.generation_json = read_text_file(path);
  c.generation = parse_generation_config(c.generation_json, path);
}

// The files beside the weights of a Hugging Face folder or a .ckpt.
struct SideFiles {
  std::string folder, config, tokenizer;
};

SideFiles side_files(const std::string& path, const LoadOptions& options) {
  SideFiles f;
  f.folder = fs::is_directory(path) ? path : fs::path(path).parent_path().string();
  if (f.folder.empty()) f.folder = ".";
  f.config = options.config_path.value_or(f.folder + "/config.json");
  f.tokenizer = options.tokenizer_path.value_or(f.folder + "/tokenizer.model");
  return f;
}

Checkpoint open_hf_or_mindspore(const std::string& path, const LoadOptions& options) {
  Checkpoint c;
  c.path = path;
  bool is_ckpt = ends_with(path, ".ckpt");
  const SideFiles side = side_files(path, options);
  const std::string& folder = side.folder;
  c.format = is_ckpt ? CheckpointFormat::MindSpore : CheckpointFormat::HuggingFace;

  const std::string& config_path = side.config;
  if (!file_exists(config_path)) fail(path, ": no config.json found at ", config_path, " (pass --config)");
  c.config = parse_model_config(read_text_file(config_path), config_path, options.position);
  read_generation_config(c, folder);
  const std::string& tokenizer_path = side.tokenizer;
  if (!file_exists(tokenizer_path)) fail(path, ": no tokenizer.model found at ", tokenizer_path, " (pass --tokenizer)");
  c.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_file(tokenizer_path));
  c.tokenizer_origin = tokenizer_path;

  if (is_ckpt) {
    c.description = "MindSpore checkpoint " + fs::path(path).filename().string();
    map_mindspore_names(c, formats::read_mindspore_ckpt(path));
  } else if (fs::is_directory(path)) {
    auto weights = formats::read_hf_weights(path);
    c.description = "Hugging Face folder, " + weights.description;
    map_hf_names(c, std::move(weights.tensors), path + "/" + weights.description);
    c.description += describe_nf4_weights(c, config_path);
  } else if (ends_with(path, ".safetensors") || ends_with(path, ".bin")) {
    c.description = "Hugging Face weights file " + fs::path(path).filename().string();
    auto tensors = ends_with(path, ".bin") ? formats::read_torch_bin(path) : formats::read_safetensors(path);
    map_hf_names(c, std::move(tensors), path);
    c.description += describe_nf4_weights(c, config_path);
  } else {
    fail(path, ": not a checkpoint: expected a Hugging Face folder, a .safetensors/.bin/.ckpt/.gguf file");
  }
  return c;
}

}  // namespace

std::vector<std::string> checkpoint_files(const std::string& path, const LoadOptions& options) {
  std::vector<std::string> files{path};
  if (ends_with(path, ".gguf")) return files;
  const SideFiles side = side_files(path, options);
  files.insert(files.end(), {side.config, side.tokenizer, side.folder + "/generation_config.json"});
  if (fs::is_directory(path)) {
    auto weights = formats::hf_weight_files(path);
    files.insert(files.end(), weights.begin(), weights.end());
  }
  return files;
}

void refuse_overwriting_checkpoint(const std::string& output, const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(output, ec)) fail(output, ": is a folder; give a file path for the output");
  if (!fs::exists(output, ec)) return;  // a new file cannot be one of the input's
  for (const auto& input : checkpoint_files(path, options))
    if (fs::exists(input, ec) && fs::equivalent(output, input, ec))
      fail("the output ", output, " is ", output == input ? "" : "the same file as " + input + ", ",
           input == path ? "the checkpoint being read" : "a file of the checkpoint being read",
           "; writing there would destroy the input: choose another output path");
}

Checkpoint open_checkpoint(const std::string& path, const LoadOptions& options) {
  if (!fs::exists(path)) fail(path, ": no such file or directory");
  Checkpoint c;
  if (ends_with(path, ".gguf")) {
    c = open_gguf_checkpoint(path, options);
  } else {
    c = open_hf_or_mindspore(path, options);
  }
  validate_tensors(c);
  return c;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> canonical_tensors(const ModelConfig& cfg) {
  const int64_t h = cfg.hidden_size, ff = cfg.intermediate_size, v = cfg.vocab_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {{"token_embd.weight", {v, h}}};
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    out.push_back({layer_tensor(l, "attn_norm"), {h}});
    for (const char* role : {"attn_q", "attn_k", "attn_v", "attn_output"}) out.push_back({layer_tensor(l, role), {h, h}});
    out.push_back({layer_tensor(l, "ffn_norm"), {h}});
    out.push_back({layer_tensor(l, "ffn_gate"), {ff, h}});
    out.push_back({layer_tensor(l, "ffn_up"), {ff, h}});
    out.push_back({layer_tensor(l, "ffn_down"), {h, ff}});
  }
  out.push_back({"output_norm.weight", {h}});
  out.push_back({"output.weight", {v, h}});
  return out;
}

void validate_tensors(const Checkpoint& c) {
  const auto& cfg = c.config;
  // (A crafted layer count was refused by ModelConfig::validate's limit before anything was sized.)
  const std::string beyond = "blk." + std::to_string(cfg.num_layers) + ".";
  if (auto it = c.tensors.lower_bound(beyond); it != c.tensors.end() && it->first.starts_with(beyond))
    fail(c.path, ": the config's layer count (num_hidden_layers / block_count) is ", cfg.num_layers,
         " but the file holds tensors of layer ", cfg.num_layers, " ('", it->first, "'); a wrong config would run a "
         "shallower model");
  for (const auto& [name, shape] : canonical_tensors(cfg)) {
    auto it = c.tensors.find(name);
    if (it == c.tensors.end()) fail(c.path, ": tensor '", name, "' is missing (", c.description, ")");
    const Tensor& t = it->second;
    if (t.shape != shape) {
      Tensor expected;
      expected.shape = shape;
      fail(c.path, ": tensor '", name, "' has shape ", t.shape_str(), ", expected ", expected.shape_str(),
           " for hidden_size ", cfg.hidden_size, ", intermediate_size ", cfg.intermediate_size, ", vocab_size ",
           cfg.vocab_size);
    }
    bool is_float = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16;
    bool computable = is_float || (shape.size() == 2 && quant::can_dequantize(t.dtype));
    if (!computable)
      fail(c.path, ": tensor '", name, "' has type ", dtype_name(t.dtype), ", which this build cannot compute with",
           shape.size() == 2 ? "" : " (norm weights must be F32, F16 or BF16)");
  }
}

}  // namespace baichuan
