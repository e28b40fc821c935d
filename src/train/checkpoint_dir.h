// A training checkpoint: a self-describing folder that is also a Hugging Face model folder.
//   OUTDIR/checkpoint-000020/
//     training_state.json    the manifest (written last): format, step, data position, RNG seed,
//                            tokens and seconds so far, the settings and the command line
//     config.json, generation_config.json, tokenizer.model, model.safetensors   (hf_export.h), or
//     above --max-shard-size model.safetensors.index.json + model-0000i-of-0000N.safetensors; the
//     manifest's "files" names the one a reader opens first ("model") and the shards ("model_shards")
//     optimizer.safetensors  AdamW's m and v: adamw_m.<name>, adamw_v.<name> (F32); its step count
//                            is the manifest's step
//     train_log.csv          the CSV log up to this step (a resumed run continues it)
// A LoRA checkpoint (format kLoraCheckpointFormat) holds the adapter instead of the model files, as a
// PEFT folder (lora_export.h), so it is also an adapter the engine applies:
//     adapter_config.json, adapter_model.safetensors   every lora_A / lora_B (F32, PEFT's names); the
//                                 base model is not copied: the settings name it (base_model)
//     optimizer.safetensors, train_log.csv, training_state.json as above
// Written atomically as a whole: every file into OUTDIR/.checkpoint-000020.tmp/ (each fsync'd), the
// folder fsync'd, renamed to its name, OUTDIR fsync'd; only then are older checkpoints removed. A run
// killed at any moment leaves the previous checkpoint complete; stale .tmp folders are ignored by
// readers and removed by the next write.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "train/adamw.h"
#include "train/hf_export.h"
#include "train/lora.h"
#include "train/train_model.h"

namespace baichuan::train {

inline constexpr const char* kCheckpointManifest = "training_state.json";
inline constexpr const char* kCheckpointFormat = "baichuan.cpp full fine-tuning checkpoint";
inline constexpr const char* kLoraCheckpointFormat = "baichuan.cpp LoRA fine-tuning checkpoint";
inline constexpr const char* kLoraCheckpointWeights = "adapter_model.safetensors";

struct CheckpointState {
  int64_t step = 0;
  int64_t epoch = 0, index = 0;  // the next row to read: position `index` of epoch `epoch`'s order
  uint64_t seed = 0;             // the shuffle of epoch e is a function of (seed, e) alone (data_order.h)
  int64_t tokens = 0;            // tokens trained on so far (rows x row length)
  double seconds = 0;            // training time so far
  nlohmann::ordered_json settings;  // the run's settings (training_run.h), to resume with the same
  std::string command_line;
};

// Writes checkpoint-<step> under `out_dir` as described above and returns its path. On any failure
// (a full disk, a write error) the partial folder is removed and Error names the checkpoint and the
// cause; the previous checkpoint is untouched.
std::string write_training_checkpoint(const std::string& out_dir, const CheckpointState& state,
                                      const TrainModel<float>& model, const AdamW<float>& optimizer,
                                      const HfFolderSources& sources, const std::string& csv_log);

// The same for a LoRA run: the adapter, its optimizer state.
std::string write_training_checkpoint(const std::string& out_dir, const CheckpointState& state,
                                      const LoraModel<float>& lora, const AdamW<float>& optimizer,
                                      const HfFolderSources& sources, const std::string& csv_log);

// `path` itself when it holds a manifest, else the complete checkpoint-* folder with the highest
// step inside it; Error when there is none.
std::string find_training_checkpoint(const std::string& path);

struct LoadedCheckpoint {
  CheckpointState state;
  std::string csv_log;
};
// Reads the manifest of checkpoint folder `dir`, restores AdamW's state into `optimizer` (sized for
// `model`, whose weights the caller loads from `dir` as a Hugging Face folder). Throws Error naming
// the file and field when something is missing or does not match the model.
LoadedCheckpoint read_training_checkpoint(const std::string& dir, const TrainModel<float>& model,
                                          AdamW<float>& optimizer);
// A LoRA checkpoint: restores the adapter into `lora` (built with the checkpoint's spec) and AdamW.
LoadedCheckpoint read_training_checkpoint(const std::string& dir, LoraModel<float>& lora, AdamW<float>& optimizer);

}  // namespace baichuan::train
