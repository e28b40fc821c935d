// AdamW exactly as torch.optim.AdamW (single-tensor path, amsgrad off, maximize off): decoupled weight
// decay, then Adam with bias correction, element by element in the parameter's float type:
//   p *= 1 - lr * weight_decay
//   m  = lerp(m, g, 1 - beta1);      v = v * beta2 + (1 - beta2) * g * g
//   p += -(lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The scalars are computed in double, as Python computes them. State (m, v) is flat, in the layout of
// the parameters.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"

namespace baichuan::train {

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // torch's default
};

template <typename T>
class AdamW {
 public:
  explicit AdamW(size_t n_params) : m_(n_params, T(0)), v_(n_params, T(0)) {}

  // One step over all parameters (step count t + 1). Threads split the elements.
  void step(std::span<T> params, std::span<const T> grads, const AdamWConfig& config, ThreadPool& pool);
  int64_t steps() const { return t_; }
  std::span<const T> m() const { return m_; }
  std::span<const T> v() const { return v_; }
  // Restores a saved state (resuming a run); throws Error when the sizes do not match.
  void load_state(std::span<const T> m, std::span<const T> v, int64_t steps);

 private:
  std::vector<T> m_, v_;
  int64_t t_ = 0;
};

}  // namespace baichuan::train
