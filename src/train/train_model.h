// Baichuan 2 held for training: every parameter in one flat buffer of float type T, the gradients
// in a second flat buffer of the same layout (so a data-parallel all-reduce is one call per bucket),
// and the forward + backward pass over a batch of padded records (forward_backward). The
// activations the backward pass needs live in a TrainContext each caller owns.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "train/flat_params.h"
#include "train/frozen_linear.h"
#include "train/ops.h"

namespace baichuan::train {

// Rows of logits alive at once (128 x 125,696 floats = 64 MB), never a whole batch's: the head's
// weight gradient is rewritten once per chunk, so fewer, larger chunks read it fewer times.
inline constexpr int64_t kHeadChunkRows = 256;

// The architecture, from config.json.
struct TrainShape {
  PositionEncoding position = PositionEncoding::Rope;
  int64_t vocab = 0, hidden = 0, ffn = 0, heads = 0, layers = 0;
  float rms_norm_eps = 1e-6f, rope_theta = 10000.0f, max_alibi_bias = 8.0f;
  double z_loss_weight = 0;  // config.json z_loss_weight (0 when absent)
  int32_t pad_token_id = 0;  // attention mask = input_ids != pad; nn.Embedding's padding_idx

  int64_t head_dim() const { return hidden / heads; }
  static TrainShape from(const ModelConfig& config);
};

// The parameters in PyTorch's named_parameters() order (embed_tokens; per layer W_pack, o_proj,
// gate_proj, down_proj, up_proj, input_layernorm, post_attention_layernorm; norm; lm_head).
std::vector<ParamInfo> param_layout(const TrainShape& shape);

// F32 views, named `prefix` + the official name, of one flat buffer laid out as `layout` (the
// parameters, the gradients or an optimizer moment), appended to `out` for write_safetensors.
void append_flat_views(std::vector<Tensor>& out, const std::vector<ParamInfo>& layout, const std::string& prefix,
                       const float* base);

// Typed pointers into one flat buffer (the parameters or the gradients).
template <typename T>
struct Weights {
  struct Layer {
    T *attn_norm, *w_pack, *o_proj, *ffn_norm, *gate, *up, *down;
  };
  T* embed;  // [vocab, hidden]
  std::vector<Layer> layers;
  T* final_norm;  // [hidden]
  T* lm_head;     // [vocab, hidden], unnormalised rows (NormHead normalises them in the graph)
};

template <typename T>
class TrainModel : public FlatParams<T> {
 public:
  // Parameters and gradients zero; without gradients (a LoRA base, frozen) grads() is empty.
  explicit TrainModel(const TrainShape& shape, bool with_gradients = true);
  // A frozen base whose matrices stay in their stored types (QLoRA): the flat buffer holds the norms
  // (and the embedding and lm_head unless `stored` holds them; layout() lists what it holds), and
  // weights() has null pointers for what lives in `stored`.
  TrainModel(const TrainShape& shape, std::shared_ptr<const StoredWeights> stored);

  const TrainShape& shape() const { return shape_; }
  const ParamInfo& info(const std::string& name) const;  // throws Error for an unknown name
  Weights<T> weights() { return bind(params_.data()); }
  Weights<T> gradients() { return bind(grads_.data()); }
  // The stored layer matrices of a quantized frozen base; nullptr when every weight is in params().
  const StoredWeights* stored() const { return stored_.get(); }
  // Bytes of the weights held: the flat buffer plus the stored matrices.
  size_t weight_bytes() const { return params_.size() * sizeof(T) + (stored_ ? stored_->bytes() : 0); }

 private:
  Weights<T> bind(T* flat) const;
  bool in_stored(const ParamInfo& p) const;  // held by stored_, not by the flat buffer
  using FlatParams<T>::layout_, FlatParams<T>::params_, FlatParams<T>::grads_;

  TrainShape shape_;
  std::shared_ptr<const StoredWeights> stored_;
};

// The weights of a checkpoint (any format open_checkpoint reads, any stored type) converted to T,
// W_pack fused back from Q, K, V in the official row order (GGUF's permuted Q/K rows undone).
// `with_gradients` false: a frozen base (LoRA), no gradient buffer.
template <typename T>
TrainModel<T> load_train_model(const Checkpoint& checkpoint, bool with_gradients = true);

// A frozen LoRA base (no gradients): layer matrices, the embedding and lm_head in a block type with an
// integer dot product (keeps_stored_type) stay in that type, copied in the official row order (W_pack
// as its Q, K, V row blocks, GGUF's permuted Q/K rows undone) and the file's pages let go; the rest is
// float32 as in load_train_model. A checkpoint without such matrices loads exactly as
// load_train_model(c, false).
TrainModel<float> load_frozen_base(const Checkpoint& checkpoint);
// The bytes load_frozen_base holds for `checkpoint` (for the memory plan, before loading), and the
// stored block types ("" when the base is all float32).
struct FrozenBaseSize {
  uint64_t bytes = 0;
  std::string stored_types;
  bool stored_head = false;  // no float32 normalised copy of lm_head in the context
};
FrozenBaseSize frozen_base_size(const Checkpoint& checkpoint);

// Random weights for tests: matrices ~ N(0, std^2), norm weights ~ 1 + N(0, std^2).
template <typename T>
void randomize(TrainModel<T>& model, uint64_t seed, double std);

// One training record, as the official fine-tune preprocessing makes it: input_ids padded with
// pad_token_id, labels -100 where there is nothing to learn. All records of a batch have one length.
struct Record {
  std::vector<int32_t> input_ids, labels;
};

// What the loss means over: the supervised tokens (labels[t + 1] != -100 for t < T - 1) and the rows
// of the z-loss (every t < T - 1). Counts of one batch; add them over the micro-batches of an
// optimizer step when accumulating gradients.
struct LossNorm {
  int64_t ce_tokens = 0, z_rows = 0;
};
LossNorm count_loss_tokens(std::span<const Record> batch);

// The activations of one forward pass that the backward pass reads, and the scratch buffers of both.
// Serves one model; grows to the largest batch seen and is reused across steps.
template <typename T>
struct TrainContext {
  // Per-layer activation checkpointing: the forward keeps each layer's input x(l) only, and the
  // backward recomputes the layer's activations from it (one layer's worth of buffers instead of L).
  // Every op is deterministic, so losses and gradients are bit-identical either way.
  bool checkpoint_activations = false;
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> ids;
  std::vector<uint8_t> key_mask;  // input_ids != pad
  struct HeadRow {
    int64_t row;     // b * T + t
    int32_t target;  // labels[b][t + 1], or -1 (a row only in the z-loss)
  };
  std::vector<HeadRow> head_rows;  // the rows whose logits the loss reads
  RopeTable<T> rope;
  std::vector<T> alibi_slopes;
  // Per layer (stacked): the residual stream x (num_layers + 1 of them), norms and their 1/rms,
  // W_pack output after RoPE, attention log-sum-exp and output, the stream after attention, MLP
  // (those after x: one layer's only, when checkpointing activations).
  std::vector<T> x, ln1, rstd1, qkv, lse, att, x_mid, ln2, rstd2, gate, up, act, lnf, rstdf;
  // NormHead: normalised rows, their norms and gradient; a chunk of logits, its rows and targets.
  std::vector<T> head, head_norm, dhead, logits, head_in, dhead_in;
  const T* normalized_head = nullptr;  // the frozen lm_head whose rows `head` holds normalised (LoRA)
  std::vector<int32_t> head_targets;
  std::vector<double> ce, z;  // per head row
  // Backward scratch.
  std::vector<T> tmp, dx, dln, datt, dqkv, dact, dgate, dup, dlnf;
  // LoRA (lora.h): A x of every adapter; scratch, the dropped-out input of the adapter at hand among it.
  std::vector<T> lora_input, lora_mid, lora_scratch, lora_dmid, lora_dinput;
};

// A TrainContext buffer with at least n elements: grown, never shrunk (a context is reused across batches).
template <typename T>
T* grow_buffer(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The loss of `batch` and its gradient, added to model.grads(). The loss is the official one:
//   mean cross-entropy of logits[t] against labels[t + 1] over labels != -100
//   + z_loss_weight * mean over all rows t < T - 1 of max(logits[t])^2,
// with the means taken over `norm` (so micro-batches of one step add up to the step's mean).
// Returns this batch's share of the loss. Throws Error naming the record for invalid input.
// `Model` is TrainModel<T> (every parameter trained) or LoraModel<T> (lora.h: the base frozen, its
// gradients untouched and possibly absent; the adapters' gradients added to lora.grads()).
template <typename Model>
double forward_backward(Model& model, TrainContext<typename Model::value_type>& ctx, std::span<const Record> batch,
                        const LossNorm& norm, ThreadPool& pool);

// The same loss without the backward pass (held-out evaluation): no gradient is computed or changed
// (a LoraModel's dropout as set).
template <typename Model>
double forward_loss(Model& model, TrainContext<typename Model::value_type>& ctx, std::span<const Record> batch,
                    const LossNorm& norm, ThreadPool& pool);

// After a non-finite loss: the first non-finite parameter (a LoraModel's adapters first, then its
// base's) or activation of the last forward pass, e.g. "parameter model.layers.1.mlp.up_proj.weight[17]
// = nan"; "" when all are finite.
template <typename Model>
std::string find_non_finite(Model& model, const TrainContext<typename Model::value_type>& ctx);

}  // namespace baichuan::train
