// The learning rate of each optimizer step: a linear warm-up from 0, then constant, linear or cosine
// decay to a floor (min_lr) at the last step, as transformers' get_*_schedule_with_warmup with a floor:
//   step s (from 1) <= warmup:  lr * s / warmup
//   after, p = (s - warmup) / (total - warmup) in (0, 1]:
//     constant  lr
//     linear    min_lr + (lr - min_lr) * (1 - p)
//     cosine    min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2
#pragma once
#include <cstdint>
#include <string>

namespace baichuan::train {

enum class ScheduleKind { Constant, Linear, Cosine };
ScheduleKind parse_schedule_kind(const std::string& name);  // "constant" | "linear" | "cosine"
const char* schedule_kind_name(ScheduleKind kind);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double lr = 1e-4, min_lr = 0;
  int64_t warmup = 0, total_steps = 1;

  // Throws Error naming the option when lr is not a positive finite number, min_lr is not in [0, lr],
  // warmup is negative or total_steps < 1.
  void validate() const;
  double at(int64_t step) const;  // the lr of step `step` (1-based)
};

}  // namespace baichuan::train
