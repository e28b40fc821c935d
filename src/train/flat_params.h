// Trainable parameters in one flat buffer, their gradients in a second one of the same layout, each
// parameter named: what AdamW, clipping, checkpoints and the data-parallel all-reduce see of a
// TrainModel (every weight) and of a LoraModel (the adapters), so they treat both alike.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"

namespace baichuan::train {

// One parameter: its official name, shape and place in the flat buffers.
struct ParamInfo {
  std::string name;  // "model.layers.0.self_attn.W_pack.weight"
  std::vector<int64_t> shape;
  size_t offset = 0, numel = 0;
};

template <typename T>
class FlatParams {
 public:
  using value_type = T;

  const std::vector<ParamInfo>& layout() const { return layout_; }
  std::span<T> params() { return params_; }
  std::span<const T> params() const { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }
  std::span<T> param(const ParamInfo& p) { return std::span<T>(params_).subspan(p.offset, p.numel); }
  std::span<T> grad(const ParamInfo& p) { return std::span<T>(grads_).subspan(p.offset, p.numel); }
  void zero_grads() { std::fill(grads_.begin(), grads_.end(), T(0)); }

  // The parameter named `name`, or nullptr.
  const ParamInfo* find(const std::string& name) const {
    for (const ParamInfo& p : layout_)
      if (p.name == name) return &p;
    return nullptr;
  }

  // The first non-finite parameter, e.g. "parameter model.layers.1.mlp.up_proj.weight[17] = nan";
  // "" when all are finite.
  std::string non_finite_param() const {
    for (const ParamInfo& p : layout_)
      for (size_t i = 0; i < p.numel; ++i)
        if (const T v = params_[p.offset + i]; !std::isfinite(v)) return cat("parameter ", p.name, "[", i, "] = ", v);
    return "";
  }

 protected:
  std::vector<ParamInfo> layout_;
  std::vector<T> params_, grads_;
};

}  // namespace baichuan::train
