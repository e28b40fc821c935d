// The loss curve of a run as a standalone SVG (OUTDIR/loss.svg): the training loss of every step
// and the held-out loss where it was evaluated, drawn from train_log.csv with the chart pieces that
// `eval --plot` uses (core/svg.h).
#pragma once
#include <string>

namespace baichuan::train {

// `csv` is the text of train_log.csv (a header naming `step`, `loss` and `eval_loss`, then a row per
// step; an empty eval_loss cell means no evaluation at that step). Throws Error naming `what` when
// the header lacks a column or a cell is not a number.
std::string loss_curve_svg(const std::string& csv, const std::string& what);

}  // namespace baichuan::train
