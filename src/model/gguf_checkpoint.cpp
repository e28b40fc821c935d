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

const char* kArch = "baichuan";

std::string key(const std::string& suffix) { return std::string(kArch) + "." + suffix; }

int64_t get_int(const gguf::File& f, const std::string& k) { return f.get(k).as_int(f.path + ": " + k); }

}  // namespace

int64_t rotate_half_row(int64_t r, int64_t head_dim) {
  int64_t head = r / head_dim, within = r % head_dim;
  return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

Checkpoint open_gguf_checkpoint(const std::string& path, const LoadOptions& options) {
  gguf::File f = gguf::read_file(path);
  const std::string arch_key = "general.architecture";
  const std::string& arch = f.get(arch_key).as_string(path + ": " + arch_key);
  if (arch != kArch) fail(path, ": general.architecture is '", arch, "', expected 'baichuan'");

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

std::vector<gguf::KeyValue> gguf_metadata(const ModelConfig& cfg, const Tokenizer& tok, const std::string& generation_json,
                                          const FileType& type, const std::string& name, bool head_normalized) {
  using gguf::Value;
  std::vector<gguf::KeyValue> meta = {
      {"general.architecture", Value::str(kArch)},
      {"general.name", Value::str(name.empty() ? "Baichuan2" : name)},
      {"general.file_type", Value::u32(llama_file_type(type))},
      {key("context_length"), Value::u32(static_cast<uint32_t>(cfg.model_max_length))},
      {key("embedding_length"), Value::u32(static_cast<uint32_t>(cfg.hidden_size))},
      {key("block_count"), Value::u32(static_cast<uint32_t>(cfg.num_layers))},
      {key("feed_forward_length"), Value::u32(static_cast<uint32_t>(cfg.intermediate_size))},
      {key("rope.dimension_count"), Value::u32(static_cast<uint32_t>(cfg.head_dim()))},
      {key("attention.head_count"), Value::u32(static_cast<uint32_t>(cfg.num_heads))},
      {key("attention.head_count_kv"), Value::u32(static_cast<uint32_t>(cfg.num_heads))},
      {key("attention.layer_norm_rms_epsilon"), Value::f32(cfg.rms_norm_eps)},
  };
  if (cfg.position == PositionEncoding::Alibi)
    meta.push_back({key("attention.max_alibi_bias"), Value::f32(cfg.max_alibi_bias)});
  else
    meta.push_back({key("rope.freq_base"), Value::f32(cfg.rope_theta)});

  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    pieces.push_back(tok.piece(id));
    scores.push_back(tok.score(id));
    types.push_back(static_cast<int32_t>(tok.type(id)));
  }
  meta.push_back({"tokenizer.ggml.model", Value::str("llama")});
  meta.push_back({"tokenizer.ggml.tokens", Value::strings(pieces)});
  meta.push_back({"tokenizer.ggml.scores", Value::f32s(scores)});
  meta.push_back({"tokenizer.ggml.token_type", Value::i32s(types)});
  meta.push_back({"tokenizer.ggml.bos_token_id", Value::u32(static_cast<uint32_t>(cfg.bos_token_id))});
  meta.push_back({"tokenizer.ggml.eos_token_id", Value::u32(static_cast<uint32_t>(cfg.eos_token_id))});
  meta.push_back({"tokenizer.ggml.unknown_token_id", Value::u32(static_cast<uint32_t>(tok.unk_id()))});
  meta.push_back({"tokenizer.ggml.padding_token_id", Value::u32(static_cast<uint32_t>(cfg.pad_token_id))});
  meta.push_back({"tokenizer.ggml.add_bos_token", Value::boolean(false)});
  meta.push_back({"tokenizer.ggml.add_eos_token", Value::boolean(false)});
  // Baichuan 2's normalizer adds no dummy prefix; without this key llama.cpp prepends a space.
  meta.push_back({"tokenizer.ggml.add_space_prefix", Value::boolean(false)});
  meta.push_back({kGgufTokenizerModelKey, Value::bytes(tok.model_bytes())});
  if (!generation_json.empty()) meta.push_back({kGgufGenerationConfigKey, Value::str(generation_json)});
  meta.push_back({kGgufHeadNormalizedKey, Value::boolean(head_normalized)});
  return meta;
}

void load_row(const Tensor& t, int64_t row, float* out) {
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  const size_t row_bytes = bytes_for(t.dtype, cols, t.name);
  const std::byte* src = t.data + static_cast<size_t>(row) * row_bytes;
  if (is_quantized(t.dtype)) return quant::dequantize_row(t.dtype, src, out, cols);
  if (t.dtype == DType::F32) return void(std::memcpy(out, src, row_bytes));
  for (int64_t i = 0; i < cols; ++i) out[i] = load_float(t.dtype, src, static_cast<size_t>(i));
}

void write_gguf_checkpoint(const Checkpoint& c, const std::string& out_path, const ConvertOptions& options) {
  const auto& cfg = c.config;
  const FileType file_type = options.file_type();
  auto tensors = canonical_tensors(cfg);
  // The head as it will be stored, decided before the metadata that describes it.
  const DType head_type = tensor_type_for(file_type, "output.weight", c.tensor("output.weight").shape, cfg);
  const bool normalize_head = options.normalize_head || is_quantized(head_type);
  // A source whose head is normalised already stays so: the raw rows are gone.
  const bool head_normalized = normalize_head || c.head_normalized.value_or(false);
  auto meta = gguf_metadata(cfg, *c.tokenizer, c.generation_json, file_type, options.name, head_normalized);
  std::vector<gguf::TensorToWrite> out;
  for (const auto& [name, shape] : tensors) {
    const Tensor& src = c.tensor(name);
    gguf::TensorToWrite t;
    t.name = name;
    t.dtype = tensor_type_for(file_type, name, src.shape, cfg);
    t.shape = src.shape;
    bool permute = !c.qk_interleaved && (name.ends_with(".attn_q.weight") || name.ends_with(".attn_k.weight"));
    // NormHead is applied in float32 before the head is rounded or quantized, as the official code would.
    // (A head normalised already is not normalised again: that would only add a rounding.)
    bool normalize = normalize_head && !c.head_normalized.value_or(false) && name == "output.weight";
    if (head_normalized && name == "output.weight" && t.dtype == DType::BF16)
      t.dtype = DType::F16;  // unit rows: F16 keeps 3 more bits than BF16 and has the range
    int64_t head_dim = cfg.head_dim();
    DType type = t.dtype;
    ThreadPool* pool = options.pool;
    auto edit = options.row_edit ? options.row_edit(name) : nullptr;
    t.produce = [&src, permute, normalize, head_dim, type, pool, edit](std::byte* dst, size_t nbytes) {
      if (src.dtype == type && !permute && !normalize && !edit && src.nbytes == nbytes) {
        std::memcpy(dst, src.data, nbytes);  // already in the requested type
        return;
      }
      const int64_t rows = src.shape.size() == 2 ? src.shape[0] : 1;
      const int64_t cols = src.shape.back();
      const size_t out_row_bytes = bytes_for(type, cols, src.name);
      auto convert_rows = [&](int64_t begin, int64_t end, int) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = begin; r < end; ++r) {
          const int64_t source_row = permute ? rotate_half_row(r, head_dim) : r;
          load_row(src, source_row, row.data());
          if (edit) edit(source_row, row.data());
          if (normalize) {  // NormHead in float32, as the official code does before inference
            double sum = 0;
            for (float v : row) sum += static_cast<double>(v) * v;
            float norm = std::max(static_cast<float>(std::sqrt(sum)), 1e-12f);
            for (float& v : row) v /= norm;
          }
          quant::from_float_row(type, row.data(), dst + static_cast<size_t>(r) * out_row_bytes, cols);
        }
      };
      if (pool && rows > 1) {
        pool->parallel_for(rows, convert_rows);
      } else {
        convert_rows(0, rows, 0);
      }
    };
    out.push_back(std::move(t));
  }
  if (options.on_tensor) {
    for (size_t i = 0; i < out.size(); ++i) {
      auto inner = std::move(out[i].produce);
      const Tensor* source = &c.tensor(out[i].name);
      const gguf::TensorToWrite* written = &out[i];
      size_t count = out.size();
      out[i].produce = [inner = std::move(inner), i, count, source, written, &options](std::byte* dst, size_t nbytes) {
        auto start = std::chrono::steady_clock::now();
        inner(dst, nbytes);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        options.on_tensor({i, count, source, written, secs});
      };
    }
  }
  gguf::write_file(out_path, meta, out);
}

}  // namespace baichuan
