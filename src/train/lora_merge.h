// Merging LoRA adapters into a model held in the official Hugging Face layout (a TrainModel: W_pack
// fused q|k|v in rotate-half row order): W += user scale * adapter scale * B A on every adapted matrix.
// `merge-lora --format hf` writes the result with write_hf_folder; the deltas are LoraDeltas' own, so
// the merged weights are those the GGUF merge and the unmerged forward pass compute with.
#pragma once

#include "core/thread_pool.h"
#include "model/lora_apply.h"
#include "train/train_model.h"

namespace baichuan::train {

// `deltas` must be built with qk_interleaved false (the model's rows are in the official order) for
// the model's config. The layer matrices must live in the flat buffer (not a stored quantized base).
void merge_lora_deltas(TrainModel<float>& model, const LoraDeltas& deltas, ThreadPool& pool);

}  // namespace baichuan::train
