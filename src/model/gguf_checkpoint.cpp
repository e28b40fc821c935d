#include "model/gguf_checkpoint.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "quant/dequantize.h"
#include "quant/type_traits.h"

namespace baichuan {

namespace {

std::string key(const std::string& suffix) { return gguf_arch_key(suffix); }

int64_t get_int(const gguf::File& f, const std::string& k) { return f.get(k).as_int(f.path + ": " + k); }

}  // namespace

std::string gguf_arch_key(const std::string& suffix) { return std::string(kGgufArchitecture) + "." + suffix; }

int64_t rotate_half_row(int64_t r, int64_t head_dim) {
  int64_t head = r / head_dim, within = r % head_dim;
  return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

Checkpoint open_gguf_checkpoint(const std::string& path, const LoadOptions& options) {
  gguf::File f = gguf::read_file(path);
  const std::string arch_key = "general.architecture";
  const std::string& arch = f.get(arch_key).as_string(path + ": " + arch_key);
  if (arch != kGgufArchitecture) fail(path, ": general.architecture is '", arch, "', expected 'baichuan'");

  Checkpoint c;
  c.format = CheckpointFormat::Gguf;
  c.path = path;
  c.description = "GGUF v" + std::to_string(f.version);
  c.qk_interleaved = true;

  if (options.tokenizer_path) {  // the user's tokenizer.model replaces whatever the file carries
    c.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_file(*options.tokenizer_path));
    c.tokenizer_origin = *options.tokenizer_path + " (--tokenizer)";
  } else if (const auto* model = f.find(kGgufTokenizerModelKey)) {
    c.tokenizer = std::make_shared<const Tokenizer>(
        Tokenizer::from_model_bytes(model->as_bytes(path + ": " + kGgufTokenizerModelKey), path + ": " + kGgufTokenizerModelKey));
    c.tokenizer_origin = "the original tokenizer.model carried in the GGUF";
  } else {
    const std::string tk = "tokenizer.ggml.tokens", sk = "tokenizer.ggml.scores", yk = "tokenizer.ggml.token_type";
    auto pieces = f.get(tk).as_strings(path + ": " + tk);
    auto scores = f.get(sk).as_floats(path + ": " + sk);
    auto types = f.get(yk).as_ints(path + ": " + yk);
    // Files made by llama.cpp's converter lost SentencePiece's user-defined types (see tokenizer.h).
    const int32_t restored = restore_user_defined_types(pieces, scores, types);
    c.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_vocab(pieces, scores, types, path + ": " + tk));
    c.tokenizer_origin = "the GGUF vocabulary";
    if (restored > 0) {
      c.tokenizer_origin += ", " + std::to_string(restored) + " user-defined piece types restored (written as NORMAL)";
      c.description += ", " + std::to_string(restored) + " user-defined tokenizer piece types restored";
    }
  }

  auto& cfg = c.config;
  cfg.vocab_size = c.tokenizer->vocab_size();
  cfg.hidden_size = get_int(f, key("embedding_length"));
  cfg.intermediate_size = get_int(f, key("feed_forward_length"));
  cfg.num_heads = get_int(f, key("attention.head_count"));
  cfg.num_layers = get_int(f, key("block_count"));
  cfg.model_max_length = get_int(f, key("context_length"));
  const std::string eps_key = key("attention.layer_norm_rms_epsilon");
  cfg.rms_norm_eps = static_cast<float>(f.get(eps_key).as_float(path + ": " + eps_key));
  if (const auto* kv = f.find(key("attention.head_count_kv")); kv && kv->as_int(key("attention.head_count_kv")) != cfg.num_heads)
    fail(path, ": ", key("attention.head_count_kv"), " differs from head_count: Baichuan 2 has no grouped-query attention");
  if (const auto* theta = f.find(key("rope.freq_base"))) cfg.rope_theta = static_cast<float>(theta->as_float(key("rope.freq_base")));
  // llama.cpp tells the families apart by depth (40 layers = 13B, ALiBi); we also write the bias.
  float alibi = 0.0f;
  if (const auto* bias = f.find(key("attention.max_alibi_bias")))
    alibi = static_cast<float>(bias->as_float(key("attention.max_alibi_bias")));
  cfg.position = alibi > 0 || cfg.num_layers == 40 ? PositionEncoding::Alibi : PositionEncoding::Rope;
  if (alibi > 0) cfg.max_alibi_bias = alibi;
  if (options.position) cfg.position = *options.position;
  for (auto [k, slot] : {std::pair{"tokenizer.ggml.bos_token_id", &cfg.bos_token_id},
                         std::pair{"tokenizer.ggml.eos_token_id", &cfg.eos_token_id},
                         std::pair{"tokenizer.ggml.padding_token_id", &cfg.pad_token_id}})
    if (const auto* v = f.find(k)) *slot = static_cast<int32_t>(v->as_int(path + ": " + k));
  ConfigFieldNames names;
  names.vocab_size = "tokenizer.ggml.tokens (count)";
  names.hidden_size = key("embedding_length");
  names.intermediate_size = key("feed_forward_length");
  names.num_heads = key("attention.head_count");
  names.num_layers = key("block_count");
  names.model_max_length = key("context_length");
  names.rms_norm_eps = eps_key;
  names.rope_theta = key("rope.freq_base");
  names.max_alibi_bias = key("attention.max_alibi_bias");
  cfg.validate(path, names);

  if (const auto* gen = f.find(kGgufGenerationConfigKey)) {
    c.generation_json = gen->as_string(path + ": " + kGgufGenerationConfigKey);
    c.generation = parse_generation_config(c.generation_json, path + ": " + kGgufGenerationConfigKey);
  }
  c.head_normalized = std::nullopt;
  if (const auto* normalized = f.find(kGgufHeadNormalizedKey))
    c.head_normalized = normalized->as_bool(path + ": " + kGgufHeadNormalizedKey);
  for (auto& t : f.tensors) c.tensors[t.name] = t;
  return c;
}

void load_row(const Tensor& t, int64_t row, float* out) {
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  const size_t row_bytes = bytes_for(t.dtype, cols, t.name);
  const std::byte* src = t.data + static_cast<size_t>(row) * row_bytes;
  if (is_quantized(t.dtype)) return quant::dequantize_row(t.dtype, src, out, cols);
  if (t.dtype == DType::F32) return void(std::memcpy(out, src, row_bytes));
  for (int64_t i = 0; i < cols; ++i) out[i] = load_float(t.dtype, src, static_cast<size_t>(i));
}

}  // namespace baichuan
