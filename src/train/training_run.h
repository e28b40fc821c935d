// Fine-tuning on a dataset (full, or LoRA with the base frozen), the loop around train_step: seeded shuffling, micro-batches of B
// rows accumulated over K per optimizer step, the learning-rate schedule, clipping, a held-out
// evaluation every N steps, a progress line and a CSV log, checkpoints every N steps and at the end,
// and resuming from a checkpoint so the run continues bit for bit as if it had never stopped.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "train/adamw.h"
#include "train/checkpoint_dir.h"
#include "train/data_parallel.h"
#include "train/dataset_reader.h"
#include "train/lora.h"
#include "train/schedule.h"
#include "train/train_model.h"

namespace baichuan::train {

// Everything that decides the numbers of a run (saved in checkpoints; a resumed run uses them).
struct TrainSettings {
  std::string data, eval_data;
  int64_t epochs = 1, max_steps = 0;  // max_steps > 0 wins over epochs
  int64_t batch = 1, grad_accum = 1;
  int64_t ranks = 1;  // data-parallel ranks (mpirun -np); a step trains on batch x grad_accum x ranks records
  ScheduleKind schedule = ScheduleKind::Cosine;
  double lr = 1e-4, min_lr = 0;
  int64_t warmup = 0;
  AdamWConfig adamw{};
  double clip = 1.0;  // max global gradient norm; 0 = no clipping
  uint64_t seed = 42;
  double eval_split = 0;
  int64_t eval_every = 0, save_every = 0;
  std::optional<LoraSpec> lora;  // set: LoRA fine-tuning of base_model (frozen)
  std::string base_model;        // the checkpoint a LoRA run adapts (a resumed run reloads it)
  bool checkpoint_activations = false;  // TrainContext::checkpoint_activations (same results, less memory)

  nlohmann::ordered_json to_json() const;
  // Fields absent from `j` keep their values in `base`.
  static TrainSettings from_json(const nlohmann::json& j, const TrainSettings& base, const std::string& what);
  // Throws Error naming the option whose value is invalid (NaN or negative lr, batch < 1, ...).
  void validate() const;
};

// Throws Error naming the dataset, record, field and position when a row does not fit the model:
// longer than its context (MindRecord rows count seq_length, one less than stored), or a token id /
// label not below vocab_size (a dataset made with another tokenizer).
void check_dataset_fits(const TokenDataset& data, const TrainShape& shape, int64_t context);

// The mean loss (cross-entropy + z-loss, as training computes it) over `rows` of `data`, in micro-
// batches of `batch` rows. Leaves garbage in the gradients (the next train_step zeroes them).
// `Model`: TrainModel<float> or LoraModel<float> (evaluated without dropout).
// Data parallel (`ranks` given): each rank evaluates its share of `rows`, and the counts and losses
// are summed, so every rank returns the mean over all of them.
template <typename Model>
double evaluate_loss(Model& model, TrainContext<float>& ctx, const TokenDataset& data, const std::vector<int64_t>& rows,
                     int64_t batch, ThreadPool& pool, const Communicator* ranks = nullptr);

struct RunOutputs {
  std::string out_dir;
  std::string command_line;
  HfFolderSources sources;  // config, generation config and tokenizer for checkpoints
  std::function<void(const std::string&)> log;  // progress lines (stderr)
  int64_t stop_after = 0;  // > 0: checkpoint and stop after this step, the schedule unchanged (an interruption)
};

struct RunResult {
  int64_t steps = 0;
  double last_loss = 0, tokens_per_second = 0, last_eval_loss = -1;
  std::string last_checkpoint;
};

// Trains `model` (TrainModel<float>: full fine-tuning; LoraModel<float>: its adapters) to the
// settings' last step, starting from `resume` when given (its weights or adapter already in `model`,
// its AdamW state in `optimizer`). Writes OUTDIR/train_log.csv and checkpoints.
// Data parallel: every rank calls it (settings.ranks == ranks.size()); rank 0 alone logs and writes.
template <typename Model>
RunResult run_finetune(Model& model, AdamW<float>& optimizer, const TrainSettings& settings,
                       const std::optional<LoadedCheckpoint>& resume, const RunOutputs& outputs, ThreadPool& pool,
                       const Communicator& ranks);

// The total number of optimizer steps of `settings` over `train_rows` training records.
int64_t total_steps(const TrainSettings& settings, int64_t train_rows);

}  // namespace baichuan::train
