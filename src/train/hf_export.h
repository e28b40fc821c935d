// A trained model as a Hugging Face folder the official code and this project load: config.json,
// generation_config.json, tokenizer.model and model.safetensors (F32, official parameter names,
// lm_head rows unnormalised as the official NormHead stores them; it normalises them in forward()).
#pragma once
#include <string>

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
};

// Writes the four files into the existing folder `dir`, each atomically (temporary name, fsync, rename).
void write_hf_folder(const std::string& dir, const TrainModel<float>& model, const HfFolderSources& sources);

}  // namespace baichuan::train
