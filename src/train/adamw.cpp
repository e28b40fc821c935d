#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace baichuan::train {

template <typename T>
void AdamW<T>::load_state(std::span<const T> m, std::span<const T> v, int64_t steps) {
  if (m.size() != m_.size() || v.size() != v_.size() || steps < 0)
    fail("AdamW state: ", m.size(), " m and ", v.size(), " v values at step ", steps, " for ", m_.size(),
         " parameters");
  m_.assign(m.begin(), m.end());
  v_.assign(v.begin(), v.end());
  t_ = steps;
}

template <typename T>
void AdamW<T>::step(std::span<T> params, std::span<const T> grads, const AdamWConfig& c, ThreadPool& pool) {
  if (params.size() != m_.size() || grads.size() != m_.size())
    fail("AdamW: ", params.size(), " parameters and ", grads.size(), " gradients for a state of ", m_.size());
  ++t_;
  const auto t = static_cast<double>(t_);
  const T decay = static_cast<T>(1.0 - c.lr * c.weight_decay);
  const T beta1_weight = static_cast<T>(1.0 - c.beta1);  // lerp weight (< 0.5 for any usual beta1)
  const T beta2 = static_cast<T>(c.beta2), one_minus_beta2 = static_cast<T>(1.0 - c.beta2);
  const T step_size = static_cast<T>(c.lr / (1.0 - std::pow(c.beta1, t)));
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(c.beta2, t)));
  const T eps = static_cast<T>(c.eps);
  T* p = params.data();
  const T* g = grads.data();
  pool.parallel_for(static_cast<int64_t>(m_.size()), [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      p[i] *= decay;
      m_[i] += beta1_weight * (g[i] - m_[i]);
      v_[i] = v_[i] * beta2 + one_minus_beta2 * g[i] * g[i];
      const T denom = std::sqrt(v_[i]) / bias_correction2_sqrt + eps;
      p[i] += -step_size * (m_[i] / denom);
    }
  }, 4096);
}

template class AdamW<float>;
template class AdamW<double>;

}  // namespace baichuan::train
