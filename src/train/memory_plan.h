// What full fine-tuning will hold in memory, printed before the first step so a run that cannot fit
// is refused with the reason instead of dying in the middle: float32 weights, gradients, AdamW's m
// and v, the activations the backward pass keeps for one micro-batch of B rows, and the vocabulary-
// sized NormHead buffers plus one chunk of logits. Mirrors the sizes TrainContext grows to
// (train_batch.cpp); the dataset is memory-mapped or small and not counted.
#pragma once
#include <cstdint>
#include <string>

#include "train/lora.h"
#include "train/train_model.h"

namespace baichuan::train {

struct MemoryPlan {
  uint64_t weights = 0, gradients = 0, optimizer = 0, activations = 0, head = 0;
  std::string weights_kind = "float32";  // "Q4_0 as stored, the rest float32" for a quantized LoRA base
  bool checkpointed = false;             // activations checkpointed per layer
  uint64_t trainable_parameters = 0;  // counted (not bytes), printed
  uint64_t total() const { return weights + gradients + optimizer + activations + head; }
  std::string describe() const;  // one line per item and the total, in GiB/MiB
};

// `checkpointed`: per-layer activation checkpointing (TrainContext::checkpoint_activations).
MemoryPlan full_finetune_memory_plan(const TrainShape& shape, int64_t batch_rows, int64_t seq_len,
                                     bool checkpointed = false);
// LoRA: the frozen base (no gradient) of `base` bytes and kind (frozen_base_size; float32 when
// base.stored_types is empty), the adapters with their gradients and AdamW state, the same
// activations plus the adapters' (A x of each, one dropped-out input), and no NormHead gradient.
MemoryPlan lora_memory_plan(const TrainShape& shape, const LoraSpec& spec, int64_t batch_rows, int64_t seq_len,
                            bool checkpointed = false, const FrozenBaseSize* base = nullptr);

// The bytes the TrainContext of `shape` reserves after a pass over B rows of T tokens, split as in the
// plan: {activations + backward scratch, NormHead and logits chunk}. `head_rows` are the rows the loss
// reads (at most B * (T - 1)).
struct ContextBytes {
  uint64_t activations = 0, head = 0;
};
ContextBytes train_context_bytes(const TrainShape& shape, int64_t batch_rows, int64_t seq_len,
                                 bool checkpointed = false);

// "8G", "512M", "1.5G", "100000" (bytes) -> bytes; throws Error naming `what`.
uint64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace baichuan::train
