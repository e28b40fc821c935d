// Baichuan 2 in GGUF, following llama.cpp's conventions for the `baichuan` architecture: metadata keys
// baichuan.*, tensor names token_embd / blk.N.* / output*, the SentencePiece vocabulary as
// tokenizer.ggml.*, Q and K rows permuted for interleaved rotary pairs. We add the original
// tokenizer.model bytes and generation_config.json, and baichuan.attention.max_alibi_bias for the
// 13B family, so nothing is lost on the way through.
#pragma once
#include <string>

#include "formats/gguf.h"
#include "model/checkpoint.h"

namespace baichuan {

// general.architecture, and the prefix of the architecture's keys: gguf_arch_key("block_count").
inline constexpr const char* kGgufArchitecture = "baichuan";
std::string gguf_arch_key(const std::string& suffix);

// Metadata keys of our own (llama.cpp ignores them).
inline constexpr const char* kGgufTokenizerModelKey = "baichuan_cpp.tokenizer_model";
inline constexpr const char* kGgufGenerationConfigKey = "baichuan_cpp.generation_config";
// true: output.weight rows are stored already divided by their L2 norm (NormHead applied), so every
// engine computes the official logits; false: stored raw (only engines applying NormHead, like this
// one, compute them right). Absent in files of other writers (llama.cpp's are raw).
inline constexpr const char* kGgufHeadNormalizedKey = "baichuan_cpp.head_normalized";

// Reading; writing (convert, quantize, init, merge-lora, training's exports) is convert/gguf_convert.h.
Checkpoint open_gguf_checkpoint(const std::string& path, const LoadOptions& options);

// Row r of the GGUF (interleaved-pair) Q/K layout holds row rotate_half_row(r) of the official
// rotate-half layout: within each head of dimension d, rows (i, i + d/2) become rows (2i, 2i + 1).
int64_t rotate_half_row(int64_t r, int64_t head_dim);
// Reads row `row` of a 2-D tensor (or the whole of a 1-D one, row 0) of any float or block type as floats.
void load_row(const Tensor& tensor, int64_t row, float* out);

}  // namespace baichuan
