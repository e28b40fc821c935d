// Opens any checkpoint a Baichuan 2 user holds and presents it the same way: a config, generation
// defaults, a tokenizer, and the weights under canonical (GGUF/llama.cpp) names.
//   - a Hugging Face folder (or a weights file inside one)
//   - a MindSpore .ckpt with config.json and tokenizer.model beside it (or given explicitly)
//   - a GGUF file (ours or llama.cpp's)
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace baichuan {

enum class CheckpointFormat { HuggingFace, MindSpore, Gguf };

struct LoadOptions {
  std::optional<std::string> config_path;     // config.json for a .ckpt (or to override)
  std::optional<std::string> tokenizer_path;  // tokenizer.model
  std::optional<PositionEncoding> position;   // force RoPE/ALiBi when the config cannot tell
};

struct Checkpoint {
  CheckpointFormat format = CheckpointFormat::HuggingFace;
  std::string path;
  std::string description;  // what was read, for logs
  ModelConfig config;
  GenerationConfig generation;
  std::string generation_json;  // generation_config.json text as found ("" if absent)
  std::shared_ptr<const Tokenizer> tokenizer;
  // Where the vocabulary came from, for the load line and `inspect`: "tokenizer.model",
  // "GGUF tokenizer.model bytes", "GGUF vocabulary", "GGUF vocabulary, 1086 user-defined piece types
  // restored (llama.cpp wrote them as NORMAL)", or "--tokenizer FILE".
  std::string tokenizer_origin;
  // Canonical names: token_embd.weight, blk.N.attn_{norm,q,k,v,output}.weight,
  // blk.N.ffn_{norm,gate,up,down}.weight, output_norm.weight, output.weight.
  std::map<std::string, Tensor> tensors;
  // GGUF stores Q and K rows permuted for interleaved (GPT-J style) rotary pairs, as llama.cpp does;
  // the other formats keep the official rotate-half layout.
  bool qk_interleaved = false;
  // Whether output.weight rows are already L2-normalised: false for the official formats (raw, as
  // released), a GGUF's kGgufHeadNormalizedKey, nullopt when a GGUF does not say (llama.cpp's: raw).
  // The forward pass normalises either way (idempotent); writers and `inspect` need to know.
  std::optional<bool> head_normalized = false;

  const Tensor& tensor(const std::string& name) const;  // throws Error naming the file if absent
};

Checkpoint open_checkpoint(const std::string& path, const LoadOptions& options = {});

// Every file open_checkpoint(path, options) reads or may read: the weights (a shard index is read to
// list its shards, nothing else is), config.json, generation_config.json, tokenizer.model.
std::vector<std::string> checkpoint_files(const std::string& path, const LoadOptions& options = {});
// Throws Error naming both paths if writing `output` would replace or truncate one of those files
// (compared by identity: the same path, a symlink or a hard link), or if `output` is a folder. Call
// it before reading anything: a writer must never destroy its own input.
void refuse_overwriting_checkpoint(const std::string& output, const std::string& path, const LoadOptions& options = {});

// Canonical tensor names of layer `layer`, e.g. layer_tensor(3, "attn_q") == "blk.3.attn_q.weight".
std::string layer_tensor(int64_t layer, const std::string& role);

// Every tensor of the architecture under its canonical name, in file order, with its shape.
std::vector<std::pair<std::string, std::vector<int64_t>>> canonical_tensors(const ModelConfig& config);

// Checks every tensor the architecture needs is present with the shape the config implies and a
// supported type; throws Error naming the file, tensor, shape found and shape expected.
void validate_tensors(const Checkpoint& checkpoint);

}  // namespace baichuan
