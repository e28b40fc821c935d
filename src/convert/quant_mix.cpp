#include "convert/quant_mix.h"

#include <cctype>
#include <charconv>

#include "core/error.h"

namespace baichuan {

namespace {

struct NamedType {
  const char* name;
  FileType type;
};

const NamedType kFileTypes[] = {
    {"f32", DType::F32},
    {"f16", DType::F16},
    {"bf16", DType::BF16},
    {"q8_0", DType::Q8_0},
    {"q4_0", DType::Q4_0},
    {"q4_1", DType::Q4_1},
    {"q5_0", DType::Q5_0},
    {"q5_1", DType::Q5_1},
    {"q4_k", DType::Q4_K},
    {"q5_k", DType::Q5_K},
    {"q6_k", DType::Q6_K},
    {"q4_k_m", {DType::Q4_K, QuantMix::Q4_K_M}},
    {"q5_k_m", {DType::Q5_K, QuantMix::Q5_K_M}},
};

// The layer of "blk.N.<role>.weight" and its role, or layer -1 for tensors outside the layers.
struct LayerTensor {
  int64_t layer = -1;
  std::string role;
};

LayerTensor split_layer_name(const std::string& name) {
  LayerTensor t;
  if (!name.starts_with("blk.")) return t;
  const char* begin = name.data() + 4;
  const char* end = name.data() + name.size();
  int64_t layer = 0;
  auto [p, ec] = std::from_chars(begin, end, layer);
  if (ec != std::errc() || p == end || *p != '.') return t;
  std::string rest(p + 1, end);
  if (!rest.ends_with(".weight")) return t;
  t.layer = layer;
  t.role = rest.substr(0, rest.size() - 7);
  return t;
}

}  // namespace

FileType parse_file_type(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& t : kFileTypes)
    if (lower == t.name) return t.type;
  fail("unknown type '", name, "' (expected one of ", file_type_names(), "; case does not matter)");
}

std::string file_type_name(const FileType& type) {
  for (const auto& t : kFileTypes)
    if (t.type == type) return t.name;
  return std::string(dtype_name(type.base));
}

const char* file_type_names() { return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m"; }

uint32_t llama_file_type(const FileType& type) {
  switch (type.mix) {
    case QuantMix::Q4_K_M: return 15;
    case QuantMix::Q5_K_M: return 17;
    case QuantMix::Pure: break;
  }
  switch (type.base) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 32;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q4_K: return 14;
    case DType::Q5_K: return 16;
    case DType::Q6_K: return 18;
    default: fail("unsupported output type ", dtype_name(type.base));
  }
}

DType matrix_type_for(DType requested, int64_t cols) {
  auto fits = [cols](DType t) { return cols % static_cast<int64_t>(dtype_info(t).block_elems) == 0; };
  if (fits(requested)) return requested;
  DType fallback = DType::F16;
  switch (requested) {
    case DType::Q4_K: fallback = DType::Q5_0; break;
    case DType::Q5_K: fallback = DType::Q5_1; break;
    case DType::Q6_K: fallback = DType::Q8_0; break;
    default: break;
  }
  return fits(fallback) ? fallback : DType::F16;
}

bool uses_more_bits(int64_t layer, int64_t num_layers) {
  // The first and last eighth of the layers, and every third layer in between.
  return layer < num_layers / 8 || layer >= 7 * num_layers / 8 || (layer - num_layers / 8) % 3 == 2;
}

DType tensor_type_for(const FileType& type, const std::string& name, const std::vector<int64_t>& shape,
                      const ModelConfig& config) {
  if (shape.size() != 2) return DType::F32;
  const int64_t cols = shape[1];
  DType chosen = type.base;
  if (type.mix != QuantMix::Pure) {
    if (name == "output.weight") {
      const bool whole_blocks = cols % static_cast<int64_t>(dtype_info(type.base).block_elems) == 0;
      chosen = whole_blocks ? DType::Q6_K : DType::Q8_0;
    } else {
      LayerTensor t = split_layer_name(name);
      if ((t.role == "attn_v" || t.role == "ffn_down") && uses_more_bits(t.layer, config.num_layers))
        chosen = DType::Q6_K;
    }
  }
  return matrix_type_for(chosen, cols);
}

}  // namespace baichuan
