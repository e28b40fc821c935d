#include "train/train_model.h"

#include <algorithm>
#include <random>

#include "core/error.h"

namespace baichuan::train {

namespace {

std::string layer_name(int64_t l, const char* part) { return cat("model.layers.", l, ".", part, ".weight"); }

}  // namespace

void append_flat_views(std::vector<Tensor>& out, const std::vector<ParamInfo>& layout, const std::string& prefix,
                       const float* base) {
  for (const ParamInfo& p : layout) {
    Tensor t;
    t.name = prefix + p.name;
    t.dtype = DType::F32;
    t.shape = p.shape;
    t.data = reinterpret_cast<const std::byte*>(base + p.offset);
    t.nbytes = p.numel * sizeof(float);
    out.push_back(std::move(t));
  }
}

TrainShape TrainShape::from(const ModelConfig& c) {
  TrainShape s;
  s.position = c.position;
  s.vocab = c.vocab_size;
  s.hidden = c.hidden_size;
  s.ffn = c.intermediate_size;
  s.heads = c.num_heads;
  s.layers = c.num_layers;
  s.rms_norm_eps = c.rms_norm_eps;
  s.rope_theta = c.rope_theta;
  s.max_alibi_bias = c.max_alibi_bias;
  s.z_loss_weight = c.z_loss_weight;
  s.pad_token_id = c.pad_token_id;
  return s;
}

std::vector<ParamInfo> param_layout(const TrainShape& s) {
  const int64_t V = s.vocab, H = s.hidden, F = s.ffn;
  std::vector<ParamInfo> out;
  auto add_param = [&](std::string name, std::vector<int64_t> shape) {
    ParamInfo p{std::move(name), std::move(shape), 0, 1};
    for (int64_t d : p.shape) p.numel *= static_cast<size_t>(d);
    p.offset = out.empty() ? 0 : out.back().offset + out.back().numel;
    out.push_back(std::move(p));
  };
  add_param("model.embed_tokens.weight", {V, H});
  for (int64_t l = 0; l < s.layers; ++l) {
    add_param(layer_name(l, "self_attn.W_pack"), {3 * H, H});
    add_param(layer_name(l, "self_attn.o_proj"), {H, H});
    add_param(layer_name(l, "mlp.gate_proj"), {F, H});
    add_param(layer_name(l, "mlp.down_proj"), {H, F});
    add_param(layer_name(l, "mlp.up_proj"), {F, H});
    add_param(layer_name(l, "input_layernorm"), {H});
    add_param(layer_name(l, "post_attention_layernorm"), {H});
  }
  add_param("model.norm.weight", {H});
  add_param("lm_head.weight", {V, H});
  return out;
}

namespace {

void check_train_shape(const TrainShape& shape) {
  if (shape.vocab <= 0 || shape.hidden <= 0 || shape.ffn <= 0 || shape.heads <= 0 || shape.layers <= 0 ||
      shape.hidden % shape.heads != 0)
    fail("training model: invalid shape (vocab ", shape.vocab, ", hidden ", shape.hidden, ", ffn ", shape.ffn,
         ", heads ", shape.heads, ", layers ", shape.layers, ")");
  if (shape.position == PositionEncoding::Rope && shape.head_dim() % 2 != 0)
    fail("training model: head dimension ", shape.head_dim(), " must be even for rotary embeddings");
}

}  // namespace

template <typename T>
TrainModel<T>::TrainModel(const TrainShape& shape, bool with_gradients) : shape_(shape) {
  check_train_shape(shape);
  layout_ = param_layout(shape);
  const size_t total = layout_.back().offset + layout_.back().numel;
  params_.assign(total, T(0));
  if (with_gradients) grads_.assign(total, T(0));
}

namespace {

// The layer matrices (stored outside the flat buffer in a quantized base).
bool is_layer_matrix(const ParamInfo& p) { return p.shape.size() == 2 && p.name.rfind("model.layers.", 0) == 0; }

}  // namespace

template <typename T>
TrainModel<T>::TrainModel(const TrainShape& shape, std::shared_ptr<const StoredWeights> stored)
    : shape_(shape), stored_(std::move(stored)) {
  check_train_shape(shape);
  if (!stored_) fail("training model: no stored matrices");
  std::vector<ParamInfo> kept;
  for (ParamInfo p : param_layout(shape))
    if (!in_stored(p)) {
      p.offset = kept.empty() ? 0 : kept.back().offset + kept.back().numel;
      kept.push_back(std::move(p));
    }
  layout_ = std::move(kept);
  params_.assign(layout_.back().offset + layout_.back().numel, T(0));
}

template <typename T>
bool TrainModel<T>::in_stored(const ParamInfo& p) const {
  if (!stored_) return false;
  if (p.name == "model.embed_tokens.weight") return stored_->embed.has_value();
  if (p.name == "lm_head.weight") return stored_->head.has_value();
  return is_layer_matrix(p);
}

template <typename T>
const ParamInfo& TrainModel<T>::info(const std::string& name) const {
  if (const ParamInfo* p = this->find(name)) return *p;
  fail("training model: no parameter named '", name, "'");
}

template <typename T>
Weights<T> TrainModel<T>::bind(T* flat) const {
  // layout_ is param_layout(shape_) or, with stored matrices, the same without the layer matrices.
  const std::vector<ParamInfo> all = stored_ ? param_layout(shape_) : std::vector<ParamInfo>{};
  size_t i = 0, k = 0;
  auto next = [&]() -> T* {
    if (!stored_) return flat + layout_[i++].offset;
    if (in_stored(all[k++])) return nullptr;
    return flat + layout_[i++].offset;
  };
  Weights<T> w;
  w.embed = next();
  for (int64_t l = 0; l < shape_.layers; ++l) {
    typename Weights<T>::Layer L;
    L.w_pack = next();
    L.o_proj = next();
    L.gate = next();
    L.down = next();
    L.up = next();
    L.attn_norm = next();
    L.ffn_norm = next();
    w.layers.push_back(L);
  }
  w.final_norm = next();
  w.lm_head = next();
  return w;
}


template <typename T>
void randomize(TrainModel<T>& model, uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  for (const ParamInfo& p : model.layout()) {
    const bool norm_weight = p.shape.size() == 1;
    for (T& x : model.param(p)) x = static_cast<T>((norm_weight ? 1.0 : 0.0) + normal(rng));
  }
}

#define BAICHUAN_TRAIN_MODEL(T)            \
  template class TrainModel<T>;           \
  template void randomize<T>(TrainModel<T>&, uint64_t, double);

BAICHUAN_TRAIN_MODEL(float)
BAICHUAN_TRAIN_MODEL(double)

}  // namespace baichuan::train
