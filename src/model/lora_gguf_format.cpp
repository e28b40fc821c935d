// The llama.cpp GGUF LoRA adapter (convert_lora_to_gguf.py's layout): blk.{i}.<role>.weight.lora_a /
// .lora_b, W_pack split into attn_q/attn_k/attn_v with Q and K rows of B permuted like the base GGUF.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/gguf_checkpoint.h"
#include "model/lora_adapter.h"
#include "model/lora_adapter_formats.h"
#include "quant/type_traits.h"

namespace baichuan {

using namespace lora_formats;

namespace {

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

}  // namespace

LoraAdapter parse_gguf_lora_adapter(const std::byte* data, size_t size, const std::string& path, const ModelConfig& config) {
  LoraAdapter adapter = build_gguf_lora_adapter(gguf::read_memory(data, size, nullptr, path), config);
  adapter.source = path;
  return adapter;
}

LoraAdapter lora_formats::read_gguf_lora_adapter_file(const std::string& path, const ModelConfig& config) {
  LoraAdapter adapter = build_gguf_lora_adapter(gguf::read_file(path), config);
  adapter.source = path;
  return adapter;
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
