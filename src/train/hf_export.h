// A trained model as a Hugging Face folder the official code and this project load: config.json,
// generation_config.json, tokenizer.model and model.safetensors (F32, official parameter names,
// lm_head rows unnormalised as the official NormHead stores them; it normalises them in forward()),
// or, above a size, shards with an index as transformers' save_pretrained writes them.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/train_model.h"

namespace baichuan::train {

// config.json of the official modeling code for `config` (architectures, model_type, sizes, ids;
// max_position_embeddings only for the 7B family, which is how readers tell RoPE from ALiBi).
std::string hf_config_json(const ModelConfig& config);

struct HfFolderSources {
  ModelConfig config;
  std::string generation_json;  // generation_config.json text ("" writes a minimal one from the ids)
  std::string tokenizer_model;  // tokenizer.model bytes ("" writes none)
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  static constexpr uint64_t kDefaultMaxShardBytes = uint64_t{2} << 30;  // 2 GiB
};

// Writes `tensors` into `dir` as model.safetensors when they fit in `max_shard_bytes`, else as
// model-00001-of-0000N.safetensors ... plus model.safetensors.index.json ({"metadata": {"total_size"},
// "weight_map": {name: shard}}), cut as save_pretrained cuts: in order, a new shard when the next
// tensor would take the current one past the limit (a larger tensor gets a shard of its own).
// Each file is written atomically. Returns the names of the files written, the one a reader opens
// first at the front: {"model.safetensors"}, or the index followed by the shards in order.
std::vector<std::string> write_safetensors_shards(const std::string& dir, std::span<const Tensor> tensors, uint64_t max_shard_bytes);

// Writes the four files into the existing folder `dir`, each atomically (temporary name, fsync, rename).
// Returns the weight files as write_safetensors_shards does (for manifests that list them).
std::vector<std::string> write_hf_folder(const std::string& dir, const TrainModel<float>& model, const HfFolderSources& sources);

// write_hf_folder into a new folder `dir` as a whole: written into the hidden sibling .NAME.tmp, then
// renamed into place (an existing `dir` is replaced), so an interrupted run leaves either the old
// folder or the new one.
void replace_hf_folder(const std::string& dir, const TrainModel<float>& model, const HfFolderSources& sources);

}  // namespace baichuan::train
