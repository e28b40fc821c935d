// The training step and loop on top of forward_backward and AdamW. `Model` is what the step trains:
// a TrainModel (full fine-tuning) or a LoraModel (the adapters, base frozen); both expose their
// trainable parameters and gradients as one flat buffer each.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "train/adamw.h"
#include "train/lora.h"
#include "train/data_parallel.h"
#include "train/train_model.h"

namespace baichuan::train {

// One optimizer step over the micro-batches of `micro_batches` (one for a plain step): zero the
// gradients, forward_backward each micro-batch with the loss averaged over all of them, AdamW.
// Returns the step's loss. Throws Error naming the step and the tensor when the loss, a gradient
// or an updated parameter is not finite (a bad loss or gradient leaves the parameters untouched).
// With a LoraModel, micro-batch i of step s draws dropout pass (s, i); dropout is off afterwards.
template <typename Model, typename T = typename Model::value_type>
double train_step(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                  std::span<const std::vector<Record>> micro_batches, const AdamWConfig& config, ThreadPool& pool);

// torch.nn.utils.clip_grad_norm_(parameters, max_norm): the global L2 norm of the gradients (the norm
// of the per-tensor norms; summed in double, tensor after tensor, so it is the same for any thread
// count) and, when max_norm > 0, every gradient times min(1, max_norm / (norm + 1e-6)). Returns the
// norm before clipping.
template <typename Model>
double clip_grad_norm(Model& model, double max_norm);

struct StepResult {
  double loss = 0;
  double grad_norm = 0;  // before clipping
};

// train_step with the gradients clipped to a global norm of `max_grad_norm` (0: no clipping) before
// AdamW, as a torch loop calls clip_grad_norm_ between backward() and optimizer.step().
// Data parallel (`ranks` given): `micro_batches` are this rank's share of the step; the loss counts
// are summed over the ranks before the backward pass and the gradients and loss after it, so every
// rank clips and steps on the same numbers as one process with all the step's records.
template <typename Model, typename T = typename Model::value_type>
StepResult train_step_clipped(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                              std::span<const std::vector<Record>> micro_batches, const AdamWConfig& config,
                              double max_grad_norm, ThreadPool& pool, const Communicator* ranks = nullptr);

// `steps` optimizer steps, step s on batches[s % batches.size()]; returns every step's loss.
// `on_step(step, loss)` (step from 1) runs after each step, e.g. to log.
template <typename Model, typename T = typename Model::value_type>
std::vector<double> train_loop(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                               std::span<const std::vector<Record>> batches, int64_t steps, const AdamWConfig& config,
                               ThreadPool& pool, const std::function<void(int64_t, double)>& on_step = {});

}  // namespace baichuan::train
