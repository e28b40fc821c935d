// The output types of `baichuan quantize`, `convert --type` and `init --type`: one element type for
// every matrix, or one of llama.cpp's mixes (Q4_K_M, Q5_K_M) that give a few sensitive tensors more
// bits. The per-tensor choice follows llama.cpp's quantizer for the `baichuan` architecture, so a
// file we write has the same tensor types as one llama-quantize writes from the same input.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace baichuan {

enum class QuantMix : uint8_t {
  Pure,    // every matrix gets `base` (fallbacks aside)
  Q4_K_M,  // base Q4_K; output Q6_K; attn_v and ffn_down Q6_K in the "more bits" layers
  Q5_K_M,  // base Q5_K; output Q6_K; attn_v and ffn_down Q6_K in the "more bits" layers
};

// What the user asked for. Implicitly built from a DType (a pure type).
struct FileType {
  DType base = DType::F16;
  QuantMix mix = QuantMix::Pure;
  FileType() = default;
  FileType(DType base_type, QuantMix m = QuantMix::Pure) : base(base_type), mix(m) {}  // NOLINT: implicit
  bool operator==(const FileType&) const = default;
};

// f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_m q5_k_m, case-insensitive (so
// llama-quantize's Q4_K_M spelling works too). Throws Error listing the names otherwise.
FileType parse_file_type(const std::string& name);
std::string file_type_name(const FileType& type);  // "q4_k_m", "f16", ...
// Every name parse_file_type accepts, comma-separated, for help texts and messages.
const char* file_type_names();

// llama.cpp's llama_ftype value for general.file_type: 0 F32, 1 F16, 32 BF16, 2 Q4_0, 3 Q4_1,
// 7 Q8_0, 8 Q5_0, 9 Q5_1, 15 Q4_K_M, 17 Q5_K_M; pure q4_k, q5_k, q6_k are labelled Q4_K_S (14),
// Q5_K_S (16) and Q6_K (18), the llama.cpp types they are closest to.
uint32_t llama_file_type(const FileType& type);

// The type a matrix with rows of `cols` elements gets when `requested` is asked for, if rows are not a
// whole number of blocks: K-quants fall back as llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1,
// Q6_K -> Q8_0), and anything still not fitting becomes F16 (where llama.cpp refuses the legacy
// block types, we store F16).
DType matrix_type_for(DType requested, int64_t cols);

// The stored type of tensor `name` (canonical GGUF name, e.g. "blk.7.ffn_down.weight") of shape `shape`
// (outermost first) in a model of shape `config` written as `type`. Vectors (norms) are F32. In the
// mixes, with n = num_layers and "more bits" layers i < n/8, i >= 7n/8 and (i - n/8) % 3 == 2:
//   output.weight:                    Q6_K (Q8_0 if its rows are not whole K blocks)
//   blk.i.attn_v / blk.i.ffn_down:    Q6_K in the more-bits layers, else the base type
//   everything else (token_embd too): the base type
// then the fallback of matrix_type_for.
DType tensor_type_for(const FileType& type, const std::string& name, const std::vector<int64_t>& shape,
                      const ModelConfig& config);

// llama.cpp's choice of layers that get more bits in the mixes (exposed for tests).
bool uses_more_bits(int64_t layer, int64_t num_layers);

}  // namespace baichuan
