#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace baichuan::train {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "cosine") return ScheduleKind::Cosine;
  fail("--schedule '", name, "': expected constant, linear or cosine");
}

const char* schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Linear: return "linear";
    case ScheduleKind::Cosine: return "cosine";
  }
  return "?";
}

void LrSchedule::validate() const {
  if (!std::isfinite(lr) || lr <= 0) fail("--lr ", lr, ": the learning rate must be a positive finite number");
  if (!std::isfinite(min_lr) || min_lr < 0 || min_lr > lr)
    fail("--min-lr ", min_lr, ": the floor must be a finite number in [0, --lr ", lr, "]");
  if (warmup < 0) fail("--warmup ", warmup, ": must not be negative");
  if (total_steps < 1) fail("the run has ", total_steps, " steps: nothing to train (check --epochs / --max-steps)");
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (kind == ScheduleKind::Constant) return lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup);
  const double p = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  if (kind == ScheduleKind::Linear) return min_lr + (lr - min_lr) * (1 - p);
  return min_lr + (lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * p));
}

}  // namespace baichuan::train
