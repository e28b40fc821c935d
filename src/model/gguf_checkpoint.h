// Baichuan 2 in GGUF, following llama.cpp's conventions for the `baichuan` architecture: metadata keys
// baichuan.*, tensor names token_embd / blk.N.* / output*, the SentencePiece vocabulary as
// tokenizer.ggml.*, Q and K rows permuted for interleaved rotary pairs. We add the original
// tokenizer.model bytes and generation_config.json, and baichuan.attention.max_alibi_bias for the
// 13B family, so nothing is lost on the way through.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "model/checkpoint.h"

namespace baichuan {

// Metadata keys of our own (llama.cpp ignores them).
inline constexpr const char* kGgufTokenizerModelKey = "baichuan_cpp.tokenizer_model";
inline constexpr const char* kGgufGenerationConfigKey = "baichuan_cpp.generation_config";

Checkpoint open_gguf_checkpoint(const std::string& path, const LoadOptions& options);

struct ConvertOptions {
  DType type = DType::F16;      // the matrices' type (F32, F16, BF16, Q8_0, Q4_0, ...); norms stay F32
  bool normalize_head = false;  // write NormHead rows already divided by their L2 norm (for llama.cpp)
  std::string name;             // general.name
};

// The GGUF metadata of a Baichuan 2 model whose matrices are stored as `matrix_type`.
std::vector<gguf::KeyValue> gguf_metadata(const ModelConfig& config, const Tokenizer& tokenizer,
                                          const std::string& generation_json, DType matrix_type, const std::string& name);
// The type a matrix with rows of `cols` elements gets when `requested` is asked for: block types
// fall back to F16 for rows that are not a whole number of blocks.
DType matrix_type_for(DType requested, int64_t cols);
// Stores n floats as F32, F16, BF16 or a quantized block type (n a whole number of blocks).
void store_floats(DType type, const float* values, int64_t n, std::byte* out);

// Streams `checkpoint` into a GGUF file, one tensor in memory at a time (written atomically).
void write_gguf_checkpoint(const Checkpoint& checkpoint, const std::string& out_path, const ConvertOptions& options);

}  // namespace baichuan
