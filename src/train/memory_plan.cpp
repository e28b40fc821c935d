#include "train/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/system_memory.h"

namespace baichuan::train {

namespace {

std::string plan_size(uint64_t bytes) {
  std::ostringstream out;
  out.precision(1);
  out << std::fixed;
  if (bytes >= (uint64_t{1} << 30)) return gibibytes(static_cast<double>(bytes));
  out << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return out.str();
}

}  // namespace

ContextBytes train_context_bytes(const TrainShape& s, int64_t batch_rows, int64_t seq_len, bool checkpointed) {
  const auto N = static_cast<uint64_t>(batch_rows * seq_len), H = static_cast<uint64_t>(s.hidden),
             F = static_cast<uint64_t>(s.ffn), V = static_cast<uint64_t>(s.vocab), nh = static_cast<uint64_t>(s.heads);
  // The residual stream of every layer; the rest of one layer's activations per kept layer.
  const uint64_t layers = static_cast<uint64_t>(s.layers), L = checkpointed ? 1 : layers;
  const uint64_t head_rows = static_cast<uint64_t>(batch_rows * std::max<int64_t>(seq_len - 1, 0));
  const uint64_t floats = (layers + 1) * N * H + 4 * L * N * H + 2 * L * N + 3 * L * N * H + L * nh * N + 3 * L * N * F +
                          N * H + N +  // forward activations
                          5 * N * H + 3 * N * H + 3 * N * F;  // backward scratch
  ContextBytes bytes;
  bytes.activations = floats * sizeof(float) + N * (sizeof(int32_t) + 1) + head_rows * (16 + 2 * sizeof(double));
  const auto chunk = static_cast<uint64_t>(kHeadChunkRows);
  bytes.head = (2 * V * H + V + chunk * V + 2 * chunk * H) * sizeof(float) + chunk * sizeof(int32_t);
  return bytes;
}

MemoryPlan full_finetune_memory_plan(const TrainShape& shape, int64_t batch_rows, int64_t seq_len, bool checkpointed) {
  uint64_t n = 0;
  for (const ParamInfo& p : param_layout(shape)) n += p.numel;
  MemoryPlan plan;
  plan.weights = n * sizeof(float);
  plan.gradients = n * sizeof(float);
  plan.optimizer = 2 * n * sizeof(float);
  const ContextBytes ctx = train_context_bytes(shape, batch_rows, seq_len, checkpointed);
  plan.activations = ctx.activations;
  plan.head = ctx.head;
  plan.trainable_parameters = n;
  plan.checkpointed = checkpointed;
  return plan;
}

MemoryPlan lora_memory_plan(const TrainShape& shape, const LoraSpec& spec, int64_t batch_rows, int64_t seq_len,
                            bool checkpointed, const FrozenBaseSize* frozen_base) {
  uint64_t base = 0;
  for (const ParamInfo& p : param_layout(shape)) base += p.numel;
  // The adapters of one layer (LoraModel's layout): r (in + out) per target.
  const auto H = static_cast<uint64_t>(shape.hidden), r = static_cast<uint64_t>(spec.rank),
             L = static_cast<uint64_t>(shape.layers), N = static_cast<uint64_t>(batch_rows * seq_len);
  uint64_t adapter = 0, max_in = 0, max_out = 0;
  for (LoraTarget t : spec.targets) {
    const auto in = static_cast<uint64_t>(lora_target_in(shape, t)), out = static_cast<uint64_t>(lora_target_out(shape, t));
    adapter += L * r * (in + out);
    max_in = std::max(max_in, in);
    max_out = std::max(max_out, out);
  }
  MemoryPlan plan;
  plan.trainable_parameters = adapter;
  plan.weights = (frozen_base ? frozen_base->bytes : base * sizeof(float)) + adapter * sizeof(float);
  if (frozen_base && !frozen_base->stored_types.empty())
    plan.weights_kind = frozen_base->stored_types + " as stored, the rest float32";
  plan.checkpointed = checkpointed;
  plan.gradients = adapter * sizeof(float);
  plan.optimizer = 2 * adapter * sizeof(float);
  const ContextBytes ctx = train_context_bytes(shape, batch_rows, seq_len, checkpointed);
  // TrainContext's lora_* buffers (lora.cpp: lora_prepare): A x of every adapter; with dropout, one
  // adapter's dropped-out input and its gradient (recomputed in the backward, not kept per layer).
  const uint64_t lora_floats = (spec.dropout > 0 ? 2 * N * max_in : 0) + N * L * spec.targets.size() * r +
                               N * max_out + N * r;
  plan.activations = ctx.activations + lora_floats * sizeof(float);
  plan.head = ctx.head - static_cast<uint64_t>(shape.vocab) * H * sizeof(float);  // no NormHead gradient
  if (frozen_base && frozen_base->stored_head)  // nor a normalised float copy of a stored head
    plan.head -= static_cast<uint64_t>(shape.vocab) * (H + 1) * sizeof(float);
  return plan;
}

std::string MemoryPlan::describe() const {
  std::ostringstream out;
  auto line = [&](const std::string& label, uint64_t bytes) {
    out << "  " << label << std::string(label.size() < 30 ? 30 - label.size() : 1, ' ') << plan_size(bytes) << "\n";
  };
  line("weights (" + weights_kind + ")", weights);
  line("gradients", gradients);
  line("optimizer state (AdamW m, v)", optimizer);
  line(checkpointed ? "activations (one micro-batch, checkpointed per layer)" : "activations (one micro-batch)",
       activations);
  line("NormHead + logits chunk", head);
  line("total", total());
  out << "  trainable parameters          " << trainable_parameters << "\n";
  return out.str();
}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail(what, " '", text, "': expected a size such as 512M or 8G");
  }
  std::string unit = text.substr(used);
  double scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) fail(what, " '", text, "': unknown unit '", unit, "' (K, M or G)");
  if (!std::isfinite(value) || value <= 0) fail(what, " '", text, "': must be a positive size");
  return static_cast<uint64_t>(value * scale);
}

}  // namespace baichuan::train
