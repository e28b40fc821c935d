#include "train/hf_export.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace baichuan::train {

std::string hf_config_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {"BaichuanForCausalLM"};
  j["model_type"] = "baichuan";
  j["tokenizer_class"] = "BaichuanTokenizer";
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["pad_token_id"] = c.pad_token_id;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_attention_heads"] = c.num_heads;
  j["num_hidden_layers"] = c.num_layers;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["vocab_size"] = c.vocab_size;
  j["model_max_length"] = c.model_max_length;
  j["initializer_range"] = 0.02;
  j["tie_word_embeddings"] = false;
  j["torch_dtype"] = "float32";
  j["use_cache"] = true;
  j["z_loss_weight"] = c.z_loss_weight;
  if (c.position == PositionEncoding::Rope) j["max_position_embeddings"] = c.model_max_length;
  return j.dump(2) + "\n";
}

std::vector<std::string> write_safetensors_shards(const std::string& dir, std::span<const Tensor> tensors, uint64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  if (max_shard_bytes == 0) fail("the maximum shard size must be positive");
  std::vector<std::vector<Tensor>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const Tensor& t : tensors) {
    if (!shards.back().empty() && shard_bytes + t.nbytes > max_shard_bytes) shards.emplace_back(), shard_bytes = 0;
    shards.back().push_back(t);
    shard_bytes += t.nbytes;
    total_bytes += t.nbytes;
  }
  if (shards.size() == 1) {
    formats::write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors);
    return {"model.safetensors"};
  }
  std::vector<std::string> files{"model.safetensors.index.json"};
  nlohmann::ordered_json weight_map;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    formats::write_safetensors((fs::path(dir) / name).string(), shards[i]);
    files.push_back(name);
    for (const Tensor& t : shards[i]) weight_map[t.name] = name;
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes}};
  index["weight_map"] = weight_map;
  AtomicFile f((fs::path(dir) / "model.safetensors.index.json").string());
  f.write(index.dump(2) + "\n");
  f.commit();
  return files;
}

std::vector<std::string> write_hf_folder(const std::string& dir, const TrainModel<float>& model, const HfFolderSources& sources) {
  namespace fs = std::filesystem;
  auto write_text = [&](const char* name, const std::string& text) {
    AtomicFile f((fs::path(dir) / name).string());
    f.write(text);
    f.commit();
  };
  write_text("config.json", hf_config_json(sources.config));
  std::string generation = sources.generation_json;
  if (generation.empty())
    generation = nlohmann::json{{"bos_token_id", sources.config.bos_token_id},
                                {"eos_token_id", sources.config.eos_token_id},
                                {"pad_token_id", sources.config.pad_token_id}}
                     .dump(2) +
                 "\n";
  write_text("generation_config.json", generation);
  if (!sources.tokenizer_model.empty()) write_text("tokenizer.model", sources.tokenizer_model);
  std::vector<Tensor> tensors;
  append_flat_views(tensors, model.layout(), "", model.params().data());
  return write_safetensors_shards(dir, tensors, sources.max_shard_bytes);
}

void replace_hf_folder(const std::string& dir, const TrainModel<float>& model, const HfFolderSources& sources) {
  namespace fs = std::filesystem;
  const fs::path final_dir(dir), parent = final_dir.parent_path(), name = final_dir.filename();
  const fs::path tmp = parent / cat(".", name.string(), ".tmp"), old = parent / cat(".", name.string(), ".old");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_hf_folder(tmp.string(), model, sources);
  fs::remove_all(old);
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  fs::remove_all(old);
}

}  // namespace baichuan::train
