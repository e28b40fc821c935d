// The one-step check files: a step description (the batch and AdamW settings, laid out as the golden
// reference/train/*-step/train_step.json) and the dump of the step's gradients and updated weights.
#pragma once
#include <string>
#include <vector>

#include "train/adamw.h"
#include "train/train_model.h"

namespace baichuan::train {

struct StepFile {
  std::vector<Record> batch;  // "batch": [{"input_ids": [...], "labels": [...]}, ...]
  AdamWConfig adamw;          // "adamw": {"lr", "betas": [b1, b2], "eps", "weight_decay"}
};

// Throws Error naming the file and the field for anything missing or malformed.
StepFile read_step_file(const std::string& path);

// Writes F32 grad.<name> (the model's gradients) and after_step.<name> (its parameters) for every
// parameter under its official name, full tensors, as safetensors.
void write_step_dump(const std::string& path, TrainModel<float>& model);

}  // namespace baichuan::train
