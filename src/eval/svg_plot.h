// Accuracy charts as standalone SVG documents (no scripts, no external resources): one run as a bar
// per subject with the benchmark's averages, or several runs (checkpoints along training, or F16 vs
// quantized) as one line per average and a faint line per subject across the runs.
#pragma once
#include <string>
#include <vector>

#include "eval/report.h"

namespace baichuan::eval {

// `labels` name the runs (one per run). Throws Error when `runs` is empty.
std::string accuracy_svg(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels);

}  // namespace baichuan::eval
