// The weights of a Hugging Face model folder: model.safetensors, model-0000N-of-0000M.safetensors with
// model.safetensors.index.json, pytorch_model.bin, or pytorch_model-0000N-of-0000M.bin with
// pytorch_model.bin.index.json.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

struct HfWeights {
  std::string description;  // e.g. "model.safetensors" or "pytorch_model.bin.index.json (3 shards)"
  std::vector<Tensor> tensors;
};

// Throws Error if the folder holds no weights, an index names a missing shard, or a tensor the index
// promises is absent from its shard.
HfWeights read_hf_weights(const std::string& folder);

// The files read_hf_weights would open (the weights file, or the index and the shards it names),
// reading no more than the index; empty if the folder holds no weights. For writers that must not
// overwrite their input.
std::vector<std::string> hf_weight_files(const std::string& folder);

}  // namespace baichuan::formats
