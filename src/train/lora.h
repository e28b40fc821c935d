// LoRA fine-tuning (PEFT's maths): the base model frozen, and per layer and target module a pair
//   A [r, in], B [out, r],   y = W x + scale * B (A dropout(x)),   scale = alpha / r (rsLoRA: alpha / sqrt(r))
// trained instead. Every A and B of the run lives in ONE flat buffer (and its gradient in a second
// one of the same layout), named as PEFT names them, so AdamW, clipping, checkpoints and a data-
// parallel all-reduce treat a LoraModel exactly as they treat a TrainModel.
//
// The forward and backward passes are train_pass.cpp's (forward_backward takes a LoraModel too):
// with a LoraModel the base weights get no gradient and the weight-gradient products of the frozen
// layers are skipped; the gradient still flows through them to their input (frozen_linear.h).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/lora_adapter.h"
#include "train/train_model.h"

namespace baichuan::train {

// The targets (LoraTarget, lora_target_name, lora_module_path) are the adapter module's
// (model/lora_adapter.h); the flat buffer holds them in kLoraTargets order within each layer.
// The shape [out, in] of target `t`'s weight (W_pack: [3 * hidden, hidden]).
int64_t lora_target_in(const TrainShape& shape, LoraTarget t);
int64_t lora_target_out(const TrainShape& shape, LoraTarget t);

struct LoraSpec {
  // The official fine-tune.py's LoraConfig.
  int64_t rank = 1;
  double alpha = 32, dropout = 0.1;
  bool rslora = false;
  std::vector<LoraTarget> targets{LoraTarget::WPack};

  double scale() const;  // alpha / r, or alpha / sqrt(r) with rsLoRA
  bool targets_module(LoraTarget t) const;
  // "r=8,alpha=16,dropout=0.05,targets=W_pack,o_proj,rslora=1" (any subset, any order; the names
  // after targets= run to the next key=value); "" gives the defaults. Throws Error naming the key
  // or value at fault.
  static LoraSpec parse(const std::string& text);
  nlohmann::ordered_json to_json() const;
  static LoraSpec from_json(const nlohmann::json& j, const std::string& what);
  std::string describe() const;  // "r 8, alpha 16 (scale 2), dropout 0.05, targets W_pack,o_proj"
};

// The adapter of one (layer, target): where its A and B sit in the flat buffers, and where its A x
// sits in TrainContext's lora_mid (an offset per row: multiply by the row count). Its dropped-out
// input is not kept: the backward recomputes it from the layer's input and the pass's mask, so dropout
// costs one slot's input of scratch, with or without activation checkpointing.
struct LoraSlot {
  int64_t layer = 0;
  LoraTarget target = LoraTarget::WPack;
  int64_t in = 0, out = 0;
  size_t a = 0, b = 0;     // offsets of A [r, in] and B [out, r]
  size_t rank_cols = 0;    // offset in ctx.lora_mid (r per row)
};

template <typename T>
class LoraModel : public FlatParams<T> {
 public:
  // Adapters for `spec` on `base` (which the LoraModel reads and never changes; it must outlive it),
  // A and B zero. `seed` (the run's) seeds init() and the dropout masks.
  LoraModel(TrainModel<T>& base, const LoraSpec& spec, uint64_t seed);

  // PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_(a=sqrt(5))), B = 0.
  void init();

  TrainModel<T>& base() const { return *base_; }
  const LoraSpec& spec() const { return spec_; }
  T scale() const { return static_cast<T>(spec_.scale()); }
  // Parameter names (layout()): "base_model.model.model.layers.0.self_attn.W_pack.lora_A.weight" (PEFT's).
  const std::vector<LoraSlot>& slots() const { return slots_; }
  const LoraSlot* slot(int64_t layer, LoraTarget t) const;  // nullptr when `t` is not adapted
  size_t rank_cols() const { return rank_cols_; }            // r times the number of slots
  int64_t max_in() const { return max_in_; }
  int64_t max_out() const { return max_out_; }
  const ParamInfo& info(const std::string& name) const;  // throws Error for an unknown name

  // Dropout: off unless a training pass turns it on. The mask of pass (step, micro_batch) is a pure
  // function of (seed, step, micro_batch, layer, target, element), so it does not depend on the
  // thread count and a resumed run draws the same masks.
  void set_dropout_pass(int64_t step, int64_t micro_batch);
  void disable_dropout() { dropout_on_ = false; }
  bool dropout_active() const { return dropout_on_ && spec_.dropout > 0; }
  // True when element `i` (row-major over [rows, in]) of `slot`'s input is kept in the current pass.
  bool dropout_keeps(const LoraSlot& slot, uint64_t i) const;

 private:
  using FlatParams<T>::layout_, FlatParams<T>::params_, FlatParams<T>::grads_;

  TrainModel<T>* base_;
  LoraSpec spec_;
  std::vector<LoraSlot> slots_;
  size_t rank_cols_ = 0;
  int64_t max_out_ = 0, max_in_ = 0;
  uint64_t seed_ = 0;
  bool dropout_on_ = false;
  uint64_t dropout_key_ = 0;
};

// The adapter's part of one linear layer, called by the pass in train_pass.cpp. lora_prepare sizes
// ctx's LoRA buffers for N rows; lora_forward adds scale * B A dropout(in) to out [N, slot.out] and
// keeps A dropout(in); lora_backward adds the gradient to din [N, slot.in] and to A and B, given the
// same `in` as the forward (kept or recomputed with the layer).
template <typename T>
void lora_prepare(const LoraModel<T>& lora, TrainContext<T>& ctx, int64_t N);
template <typename T>
void lora_forward(const LoraModel<T>& lora, const LoraSlot& slot, T* out, const T* in, TrainContext<T>& ctx, int64_t N,
                  ThreadPool& pool);
template <typename T>
void lora_backward(LoraModel<T>& lora, const LoraSlot& slot, T* din, const T* dout, const T* in, TrainContext<T>& ctx,
                   int64_t N, ThreadPool& pool);

}  // namespace baichuan::train
