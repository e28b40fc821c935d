#include "convert/gguf_convert.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "model/gguf_checkpoint.h"
#include "quant/type_traits.h"

namespace baichuan {

std::vector<gguf::KeyValue> gguf_metadata(const ModelConfig& cfg, const Tokenizer& tok, const std::string& generation_json,
                                          const FileType& type, const std::string& name, bool head_normalized) {
  using gguf::Value;
  std::vector<gguf::KeyValue> meta = {
      {"general.architecture", Value::str(kGgufArchitecture)},
      {"general.name", Value::str(name.empty() ? "Baichuan2" : name)},
      {"general.file_type", Value::u32(llama_file_type(type))},
      {gguf_arch_key("context_length"), Value::u32(static_cast<uint32_t>(cfg.model_max_length))},
      {gguf_arch_key("embedding_length"), Value::u32(static_cast<uint32_t>(cfg.hidden_size))},
      {gguf_arch_key("block_count"), Value::u32(static_cast<uint32_t>(cfg.num_layers))},
      {gguf_arch_key("feed_forward_length"), Value::u32(static_cast<uint32_t>(cfg.intermediate_size))},
      {gguf_arch_key("rope.dimension_count"), Value::u32(static_cast<uint32_t>(cfg.head_dim()))},
      {gguf_arch_key("attention.head_count"), Value::u32(static_cast<uint32_t>(cfg.num_heads))},
      {gguf_arch_key("attention.head_count_kv"), Value::u32(static_cast<uint32_t>(cfg.num_heads))},
      {gguf_arch_key("attention.layer_norm_rms_epsilon"), Value::f32(cfg.rms_norm_eps)},
  };
  if (cfg.position == PositionEncoding::Alibi)
    meta.push_back({gguf_arch_key("attention.max_alibi_bias"), Value::f32(cfg.max_alibi_bias)});
  else
    meta.push_back({gguf_arch_key("rope.freq_base"), Value::f32(cfg.rope_theta)});

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
