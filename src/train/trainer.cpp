#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"

namespace baichuan::train {

namespace {

// Throws naming the first parameter whose `which` values (gradients or parameters) hold a NaN or inf.
template <typename Model>
void check_finite(Model& model, bool gradients, int64_t step) {
  for (const ParamInfo& p : model.layout()) {
    auto v = gradients ? model.grad(p) : model.param(p);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        fail("step ", step, ": ", gradients ? "the gradient of " : "after the AdamW update, ", p.name, " holds ", v[i],
             " at element ", i, gradients ? " (the parameters were not updated)" : "");
  }
}

}  // namespace

template <typename Model>
double clip_grad_norm(Model& model, double max_norm) {
  using T = typename Model::value_type;
  double sum_of_squares = 0;
  for (const ParamInfo& p : model.layout()) {
    double tensor_sq = 0;
    for (T g : model.grad(p)) tensor_sq += static_cast<double>(g) * static_cast<double>(g);
    sum_of_squares += tensor_sq;
  }
  const double norm = std::sqrt(sum_of_squares);
  if (max_norm > 0 && std::isfinite(norm)) {
    const T coef = static_cast<T>(std::min(1.0, max_norm / (norm + 1e-6)));
    if (coef != T(1))
      for (T& g : model.grads()) g *= coef;
  }
  return norm;
}

template <typename Model, typename T>
double train_step(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                  std::span<const std::vector<Record>> micro_batches, const AdamWConfig& config, ThreadPool& pool) {
  return train_step_clipped(model, optimizer, ctx, micro_batches, config, 0.0, pool).loss;
}

template <typename Model, typename T>
StepResult train_step_clipped(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                              std::span<const std::vector<Record>> micro_batches, const AdamWConfig& config,
                              double max_grad_norm, ThreadPool& pool, const Communicator* ranks) {
  const int64_t step = optimizer.steps() + 1;
  LossNorm norm;  // the mean runs over every micro-batch of the step
  for (const auto& batch : micro_batches) {
    const LossNorm n = count_loss_tokens(batch);
    norm.ce_tokens += n.ce_tokens;
    norm.z_rows += n.z_rows;
  }
  if (ranks) norm = ranks->sum(norm);
  model.zero_grads();
  double loss = 0;
  int64_t micro = 0;
  for (const auto& batch : micro_batches) {
    if constexpr (std::is_same_v<Model, LoraModel<T>>) model.set_dropout_pass(step, micro++);
    const double part = forward_backward(model, ctx, batch, norm, pool);
    if constexpr (std::is_same_v<Model, LoraModel<T>>) model.disable_dropout();
    if (!std::isfinite(part)) {
      const std::string where = find_non_finite(model, ctx);
      fail("step ", step, ": the loss is ", part, where.empty() ? "" : "; first non-finite value: " + where,
           " (the parameters were not updated)");
    }
    loss += part;
  }
  if (ranks) {
    ranks->sum(model.grads());
    loss = ranks->sum(loss);
  }
  check_finite(model, true, step);
  const double grad_norm = clip_grad_norm(model, max_grad_norm);
  optimizer.step(model.params(), model.grads(), config, pool);
  check_finite(model, false, step);
  return {loss, grad_norm};
}

template <typename Model, typename T>
std::vector<double> train_loop(Model& model, AdamW<T>& optimizer, TrainContext<T>& ctx,
                               std::span<const std::vector<Record>> batches, int64_t steps, const AdamWConfig& config,
                               ThreadPool& pool, const std::function<void(int64_t, double)>& on_step) {
  if (batches.empty()) fail("training: no batches");
  std::vector<double> losses;
  for (int64_t s = 0; s < steps; ++s) {
    const auto& batch = batches[static_cast<size_t>(s) % batches.size()];
    losses.push_back(train_step(model, optimizer, ctx, std::span<const std::vector<Record>>(&batch, 1), config, pool));
    if (on_step) on_step(s + 1, losses.back());
  }
  return losses;
}

#define BAICHUAN_TRAINER(M, T)                                                                                   \
  template double train_step<M, T>(M&, AdamW<T>&, TrainContext<T>&, std::span<const std::vector<Record>>,        \
                                   const AdamWConfig&, ThreadPool&);                                             \
  template double clip_grad_norm<M>(M&, double);                                                                 \
  template StepResult train_step_clipped<M, T>(M&, AdamW<T>&, TrainContext<T>&,                                  \
                                               std::span<const std::vector<Record>>, const AdamWConfig&, double, \
                                               ThreadPool&, const Communicator*);                                                     \
  template std::vector<double> train_loop<M, T>(M&, AdamW<T>&, TrainContext<T>&,                                 \
                                                std::span<const std::vector<Record>>, int64_t,                   \
                                                const AdamWConfig&, ThreadPool&,                                 \
                                                const std::function<void(int64_t, double)>&);

BAICHUAN_TRAINER(TrainModel<float>, float)
BAICHUAN_TRAINER(TrainModel<double>, double)
BAICHUAN_TRAINER(LoraModel<float>, float)
BAICHUAN_TRAINER(LoraModel<double>, double)

}  // namespace baichuan::train
