#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "core/error.h"
#include "kernels/ops.h"
#include "kernels/vec.h"
#include "train/frozen_linear.h"
#include "train/lora.h"

namespace baichuan::train {

namespace {

constexpr int32_t kIgnoreIndex = -100;  // CrossEntropyLoss's ignore_index, the official label padding
constexpr int64_t kHeadChunkRows = 32;  // rows of logits alive at once: 32 x 125,696 floats = 16 MB

std::string layer_name(int64_t l, const char* part) { return cat("model.layers.", l, ".", part, ".weight"); }

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

template <typename T>
void zero(std::vector<T>& v, size_t n) {
  std::fill_n(grow(v, n), n, T(0));
}

// out = a + b over n elements (the residual connections).
template <typename T>
void add(T* out, const T* a, const T* b, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  }, 4096);
}

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

template <typename T>
TrainModel<T>::TrainModel(const TrainShape& shape, bool with_gradients) : shape_(shape), layout_(param_layout(shape)) {
  if (shape.vocab <= 0 || shape.hidden <= 0 || shape.ffn <= 0 || shape.heads <= 0 || shape.layers <= 0 ||
      shape.hidden % shape.heads != 0)
    fail("training model: invalid shape (vocab ", shape.vocab, ", hidden ", shape.hidden, ", ffn ", shape.ffn,
         ", heads ", shape.heads, ", layers ", shape.layers, ")");
  if (shape.position == PositionEncoding::Rope && shape.head_dim() % 2 != 0)
    fail("training model: head dimension ", shape.head_dim(), " must be even for rotary embeddings");
  const size_t total = layout_.back().offset + layout_.back().numel;
  params_.assign(total, T(0));
  if (with_gradients) grads_.assign(total, T(0));
}

template <typename T>
const ParamInfo& TrainModel<T>::info(const std::string& name) const {
  for (const ParamInfo& p : layout_)
    if (p.name == name) return p;
  fail("training model: no parameter named '", name, "'");
}

template <typename T>
void TrainModel<T>::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <typename T>
Weights<T> TrainModel<T>::bind(T* flat) const {
  size_t i = 0;
  auto next = [&] { return flat + layout_[i++].offset; };
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
TrainModel<T> load_train_model(const Checkpoint& c, bool with_gradients) {
  validate_tensors(c);
  TrainModel<T> model(TrainShape::from(c.config), with_gradients);
  const TrainShape& s = model.shape();
  Weights<T> w = model.weights();
  std::vector<float> row;
  // Copies a checkpoint tensor (1-D or 2-D, any stored type) to dst; `source_row` maps a destination
  // row to the stored row.
  auto copy = [&](const std::string& canonical, T* dst, auto source_row) {
    const Tensor& t = c.tensor(canonical);
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
    const size_t row_bytes = bytes_for(t.dtype, cols, t.name);
    row.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      kernels::row_to_f32(t.dtype, t.data + static_cast<size_t>(source_row(r)) * row_bytes, row.data(), cols);
      std::copy(row.begin(), row.end(), dst + r * cols);
    }
  };
  auto same = [](int64_t r) { return r; };
  // GGUF keeps Q and K rows of each head in interleaved-pair order: rows (i, i + d/2) of the official
  // layout sit at rows (2i, 2i + 1).
  const int64_t d = s.head_dim();
  auto unpermute = [&](int64_t r) {
    const int64_t head = r / d, within = r % d, half = d / 2;
    return head * d + (within < half ? 2 * within : 2 * (within - half) + 1);
  };
  auto qk_row = [&](int64_t r) { return c.qk_interleaved ? unpermute(r) : r; };

  copy("token_embd.weight", w.embed, same);
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    copy(layer_tensor(l, "attn_q"), L.w_pack, qk_row);
    copy(layer_tensor(l, "attn_k"), L.w_pack + s.hidden * s.hidden, qk_row);
    copy(layer_tensor(l, "attn_v"), L.w_pack + 2 * s.hidden * s.hidden, same);
    copy(layer_tensor(l, "attn_output"), L.o_proj, same);
    copy(layer_tensor(l, "ffn_gate"), L.gate, same);
    copy(layer_tensor(l, "ffn_up"), L.up, same);
    copy(layer_tensor(l, "ffn_down"), L.down, same);
    copy(layer_tensor(l, "attn_norm"), L.attn_norm, same);
    copy(layer_tensor(l, "ffn_norm"), L.ffn_norm, same);
  }
  copy("output_norm.weight", w.final_norm, same);
  copy("output.weight", w.lm_head, same);
  return model;
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

LossNorm count_loss_tokens(std::span<const Record> batch) {
  LossNorm n;
  for (const Record& r : batch) {
    const auto T = static_cast<int64_t>(r.labels.size());
    for (int64_t t = 1; t < T; ++t) n.ce_tokens += r.labels[static_cast<size_t>(t)] != kIgnoreIndex;
    n.z_rows += std::max<int64_t>(0, T - 1);
  }
  return n;
}

namespace {

// Checks the batch and fills ids, the key mask and the rows the loss reads; sizes the buffers.
template <typename T>
void prepare(TrainContext<T>& a, const TrainShape& s, std::span<const Record> batch, bool head_gradient) {
  if (batch.empty()) fail("training batch: no records");
  const auto B = static_cast<int64_t>(batch.size());
  const auto Tn = static_cast<int64_t>(batch[0].input_ids.size());
  if (Tn < 2) fail("training batch: record 0 has ", Tn, " tokens; a record needs at least 2");
  a.ids.clear();
  a.key_mask.clear();
  a.head_rows.clear();
  for (int64_t b = 0; b < B; ++b) {
    const Record& r = batch[static_cast<size_t>(b)];
    if (static_cast<int64_t>(r.input_ids.size()) != Tn || static_cast<int64_t>(r.labels.size()) != Tn)
      fail("training batch: record ", b, " has ", r.input_ids.size(), " input_ids and ", r.labels.size(),
           " labels; every record of a batch must be padded to ", Tn, " (the length of record 0)");
    for (int64_t t = 0; t < Tn; ++t) {
      const int32_t id = r.input_ids[static_cast<size_t>(t)], label = r.labels[static_cast<size_t>(t)];
      if (id < 0 || id >= s.vocab)
        fail("training batch: record ", b, ": input_ids[", t, "] = ", id, " is outside the vocabulary of ", s.vocab);
      if (label != kIgnoreIndex && (label < 0 || label >= s.vocab))
        fail("training batch: record ", b, ": labels[", t, "] = ", label, " is neither -100 nor a token id below ",
             s.vocab);
      a.ids.push_back(id);
      a.key_mask.push_back(id != s.pad_token_id);
      // Row t predicts labels[t + 1]; with z-loss every row but the last is read.
      if (t + 1 < Tn) {
        const int32_t next = r.labels[static_cast<size_t>(t + 1)];
        if (next != kIgnoreIndex || s.z_loss_weight != 0)
          a.head_rows.push_back({b * Tn + t, next == kIgnoreIndex ? -1 : next});
      }
    }
  }
  if (a.batch != B || a.seq_len != Tn) {
    a.batch = B;
    a.seq_len = Tn;
    if (s.position == PositionEncoding::Rope) a.rope = rope_table<T>(Tn, s.head_dim(), s.rope_theta);
    if (s.position == PositionEncoding::Alibi) {
      const std::vector<float> slopes = kernels::alibi_slopes(s.heads, s.max_alibi_bias);
      a.alibi_slopes.assign(slopes.begin(), slopes.end());
    }
  }
  const auto N = static_cast<size_t>(B * Tn), H = static_cast<size_t>(s.hidden), F = static_cast<size_t>(s.ffn),
             L = static_cast<size_t>(s.layers), V = static_cast<size_t>(s.vocab), nh = static_cast<size_t>(s.heads);
  grow(a.x, (L + 1) * N * H);
  for (auto* v : {&a.ln1, &a.att, &a.x_mid, &a.ln2}) grow(*v, L * N * H);
  for (auto* v : {&a.rstd1, &a.rstd2}) grow(*v, L * N);
  grow(a.qkv, L * N * 3 * H);
  grow(a.lse, L * nh * N);
  for (auto* v : {&a.gate, &a.up, &a.act}) grow(*v, L * N * F);
  grow(a.lnf, N * H);
  grow(a.rstdf, N);
  grow(a.head, V * H);
  if (head_gradient) grow(a.dhead, V * H);
  grow(a.head_norm, V);
  grow(a.logits, static_cast<size_t>(kHeadChunkRows) * V);
  for (auto* v : {&a.head_in, &a.dhead_in}) grow(*v, static_cast<size_t>(kHeadChunkRows) * H);
  grow(a.head_targets, static_cast<size_t>(kHeadChunkRows));
  for (auto* v : {&a.ce, &a.z}) grow(*v, a.head_rows.size());
  for (auto* v : {&a.tmp, &a.dx, &a.dln, &a.datt, &a.dlnf}) grow(*v, N * H);
  grow(a.dqkv, N * 3 * H);
  for (auto* v : {&a.dact, &a.dgate, &a.dup}) grow(*v, N * F);
}

// The pass of both kinds of training: full (lora == nullptr: every parameter's gradient) and LoRA
// (the base frozen: no base gradient, no weight-gradient products; the adapters' gradients).
template <typename T>
double model_pass(TrainModel<T>& model, LoraModel<T>* lora, TrainContext<T>& a, std::span<const Record> batch,
                  const LossNorm& norm, ThreadPool& pool) {
  const TrainShape& s = model.shape();
  const bool frozen = lora != nullptr;
  prepare(a, s, batch, !frozen);
  if (norm.ce_tokens <= 0) fail("training batch: no label to learn (every shifted label is -100)");
  const int64_t N = a.batch * a.seq_len, H = s.hidden, F = s.ffn, V = s.vocab, L = s.layers;
  const QkvShape qs{a.batch, a.seq_len, s.heads, s.head_dim()};
  const bool rope = s.position == PositionEncoding::Rope;
  const T* slopes = rope ? nullptr : a.alibi_slopes.data();
  const T eps = static_cast<T>(s.rms_norm_eps);
  const Weights<T> w = model.weights();
  Weights<T> g{};  // all null when frozen
  if (!frozen) g = model.gradients();
  if (frozen) lora_prepare(*lora, a, N);
  // A linear layer (module t of layer l): out [N, O] = in [N, I] . W^T, plus its adapter.
  auto linear_forward = [&](T* out, const T* in, const T* W, int64_t I, int64_t O, int64_t l, LoraTarget t) {
    if (!frozen) return matmul_forward(out, in, W, N, I, O, pool);
    frozen_linear_forward(out, in, FrozenLinear<T>{W, I, O}, N, pool);
    if (const LoraSlot* slot = lora->slot(l, t)) lora_forward(*lora, *slot, out, in, a, N, pool);
  };
  // Its backward: din += dout . W (and dW += dout^T . in when training the base). With the base
  // frozen, the gradient below layer 0's W_pack reaches only the frozen embedding: not computed.
  auto linear_backward = [&](T* din, T* dW, const T* dout, const T* in, const T* W, int64_t I, int64_t O, int64_t l,
                             LoraTarget t) {
    if (!frozen) return matmul_backward(din, dW, dout, in, W, N, I, O, pool);
    if (l > 0 || t != LoraTarget::WPack) frozen_linear_backward(din, dout, FrozenLinear<T>{W, I, O}, N, pool);
    if (const LoraSlot* slot = lora->slot(l, t)) lora_backward(*lora, *slot, din, dout, in, a, N, pool);
  };
  // Per-layer slices of the stacked activations.
  auto x = [&](int64_t l) { return a.x.data() + l * N * H; };
  auto at = [&](std::vector<T>& v, int64_t l, int64_t per_row) { return v.data() + l * N * per_row; };

  // ---- forward ----
  embedding_forward(x(0), a.ids.data(), w.embed, N, H);
  for (int64_t l = 0; l < L; ++l) {
    const auto& lw = w.layers[static_cast<size_t>(l)];
    T *ln1 = at(a.ln1, l, H), *qkv = at(a.qkv, l, 3 * H), *att = at(a.att, l, H), *x_mid = at(a.x_mid, l, H);
    T *ln2 = at(a.ln2, l, H), *gate = at(a.gate, l, F), *up = at(a.up, l, F), *act = at(a.act, l, F);
    rmsnorm_forward(ln1, at(a.rstd1, l, 1), x(l), lw.attn_norm, N, H, eps, pool);
    linear_forward(qkv, ln1, lw.w_pack, H, 3 * H, l, LoraTarget::WPack);
    if (rope) rope_forward(qkv, a.rope, qs, pool);
    attention_forward(att, at(a.lse, l, s.heads), qkv, a.key_mask.data(), slopes, qs, pool);
    linear_forward(a.tmp.data(), att, lw.o_proj, H, H, l, LoraTarget::OProj);
    add(x_mid, x(l), a.tmp.data(), N * H, pool);
    rmsnorm_forward(ln2, at(a.rstd2, l, 1), x_mid, lw.ffn_norm, N, H, eps, pool);
    linear_forward(gate, ln2, lw.gate, H, F, l, LoraTarget::GateProj);
    linear_forward(up, ln2, lw.up, H, F, l, LoraTarget::UpProj);
    swiglu_forward(act, gate, up, N * F, pool);
    linear_forward(a.tmp.data(), act, lw.down, F, H, l, LoraTarget::DownProj);
    add(x(l + 1), x_mid, a.tmp.data(), N * H, pool);
  }
  rmsnorm_forward(a.lnf.data(), a.rstdf.data(), x(L), w.final_norm, N, H, eps, pool);

  // ---- NormHead, loss and their backward, a chunk of rows at a time ----
  // A frozen head is normalised once per context (V x H values, 2 GB for 7B: more than the layers
  // of a short batch cost to read); a trained one changes every step.
  if (!frozen || a.normalized_head != w.lm_head)
    normalize_rows_forward(a.head.data(), a.head_norm.data(), w.lm_head, V, H, pool);
  a.normalized_head = frozen ? w.lm_head : nullptr;
  if (!frozen) zero(a.dhead, static_cast<size_t>(V * H));
  zero(a.dlnf, static_cast<size_t>(N * H));
  const double ce_scale = 1.0 / static_cast<double>(norm.ce_tokens);
  const double z_scale = norm.z_rows > 0 ? s.z_loss_weight / static_cast<double>(norm.z_rows) : 0.0;
  const auto n_head = static_cast<int64_t>(a.head_rows.size());
  for (int64_t c0 = 0; c0 < n_head; c0 += kHeadChunkRows) {
    const int64_t C = std::min(kHeadChunkRows, n_head - c0);
    for (int64_t r = 0; r < C; ++r) {
      const auto& hr = a.head_rows[static_cast<size_t>(c0 + r)];
      std::copy_n(a.lnf.data() + hr.row * H, H, a.head_in.data() + r * H);
      a.head_targets[static_cast<size_t>(r)] = hr.target;
    }
    matmul_forward(a.logits.data(), a.head_in.data(), a.head.data(), C, H, V, pool);
    cross_entropy_forward_backward(a.logits.data(), a.ce.data() + c0, a.z.data() + c0, a.head_targets.data(), C, V,
                                   ce_scale, z_scale, pool);
    std::fill_n(a.dhead_in.data(), C * H, T(0));
    matmul_backward(a.dhead_in.data(), frozen ? nullptr : a.dhead.data(), a.logits.data(), a.head_in.data(),
                    a.head.data(), C, H, V, pool);
    for (int64_t r = 0; r < C; ++r)
      std::copy_n(a.dhead_in.data() + r * H, H, a.dlnf.data() + a.head_rows[static_cast<size_t>(c0 + r)].row * H);
  }
  if (!frozen) normalize_rows_backward(g.lm_head, a.dhead.data(), a.head.data(), a.head_norm.data(), V, H, pool);
  double ce_sum = 0, z_sum = 0;  // in row order, whatever the threads
  for (int64_t r = 0; r < n_head; ++r) {
    ce_sum += a.ce[static_cast<size_t>(r)];
    z_sum += a.z[static_cast<size_t>(r)];
  }

  // ---- backward ----
  zero(a.dx, static_cast<size_t>(N * H));
  rmsnorm_backward(a.dx.data(), g.final_norm, a.dlnf.data(), x(L), w.final_norm, a.rstdf.data(), N, H, pool);
  for (int64_t l = L - 1; l >= 0; --l) {
    const auto& lw = w.layers[static_cast<size_t>(l)];
    const typename Weights<T>::Layer lg = frozen ? typename Weights<T>::Layer{} : g.layers[static_cast<size_t>(l)];
    T *ln1 = at(a.ln1, l, H), *qkv = at(a.qkv, l, 3 * H), *att = at(a.att, l, H), *x_mid = at(a.x_mid, l, H);
    T *ln2 = at(a.ln2, l, H), *gate = at(a.gate, l, F), *up = at(a.up, l, F), *act = at(a.act, l, F);
    // x(l + 1) = x_mid + down(silu(gate(ln2)) * up(ln2)): dx is d x(l + 1), and becomes d x_mid.
    zero(a.dact, static_cast<size_t>(N * F));
    linear_backward(a.dact.data(), lg.down, a.dx.data(), act, lw.down, F, H, l, LoraTarget::DownProj);
    swiglu_backward(a.dgate.data(), a.dup.data(), a.dact.data(), gate, up, N * F, pool);
    zero(a.dln, static_cast<size_t>(N * H));
    linear_backward(a.dln.data(), lg.gate, a.dgate.data(), ln2, lw.gate, H, F, l, LoraTarget::GateProj);
    linear_backward(a.dln.data(), lg.up, a.dup.data(), ln2, lw.up, H, F, l, LoraTarget::UpProj);
    rmsnorm_backward(a.dx.data(), lg.ffn_norm, a.dln.data(), x_mid, lw.ffn_norm, at(a.rstd2, l, 1), N, H, pool);
    // x_mid = x(l) + o_proj(attention(rope(W_pack(ln1)))): dx becomes d x(l).
    zero(a.datt, static_cast<size_t>(N * H));
    linear_backward(a.datt.data(), lg.o_proj, a.dx.data(), att, lw.o_proj, H, H, l, LoraTarget::OProj);
    zero(a.dqkv, static_cast<size_t>(N * 3 * H));
    attention_backward(a.dqkv.data(), a.datt.data(), qkv, at(a.lse, l, s.heads), a.key_mask.data(), slopes, qs, pool);
    if (rope) rope_backward(a.dqkv.data(), a.rope, qs, pool);
    zero(a.dln, static_cast<size_t>(N * H));
    linear_backward(a.dln.data(), lg.w_pack, a.dqkv.data(), ln1, lw.w_pack, H, 3 * H, l, LoraTarget::WPack);
    if (l > 0 || !frozen)
      rmsnorm_backward(a.dx.data(), lg.attn_norm, a.dln.data(), x(l), lw.attn_norm, at(a.rstd1, l, 1), N, H, pool);
  }
  if (!frozen) embedding_backward(g.embed, a.dx.data(), a.ids.data(), N, H, s.pad_token_id);
  return ce_sum * ce_scale + z_sum * z_scale;
}

}  // namespace

template <typename T>
double forward_backward(TrainModel<T>& model, TrainContext<T>& ctx, std::span<const Record> batch,
                        const LossNorm& norm, ThreadPool& pool) {
  return model_pass<T>(model, nullptr, ctx, batch, norm, pool);
}

template <typename T>
double forward_backward(LoraModel<T>& lora, TrainContext<T>& ctx, std::span<const Record> batch, const LossNorm& norm,
                        ThreadPool& pool) {
  return model_pass(lora.base(), &lora, ctx, batch, norm, pool);
}

template <typename T>
std::string find_non_finite(TrainModel<T>& model, const TrainContext<T>& a) {
  for (const ParamInfo& p : model.layout()) {
    auto v = model.param(p);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) return cat("parameter ", p.name, "[", i, "] = ", v[i]);
  }
  const TrainShape& s = model.shape();
  const auto N = static_cast<size_t>(a.batch * a.seq_len), H = static_cast<size_t>(s.hidden),
             F = static_cast<size_t>(s.ffn);
  // Scans rows [0, N) of one activation of `per_row` values per row starting at `begin`.
  auto scan = [&](const std::vector<T>& v, size_t begin, size_t per_row, const std::string& what) -> std::string {
    for (size_t i = begin; i < begin + N * per_row && i < v.size(); ++i)
      if (!std::isfinite(v[i])) {
        const size_t row = (i - begin) / per_row;
        return cat(what, " of record ", row / static_cast<size_t>(a.seq_len), ", position ",
                   row % static_cast<size_t>(a.seq_len), " = ", v[i]);
      }
    return "";
  };
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto L = static_cast<size_t>(l);
    const std::string layer = cat("model.layers.", l, " ");
    for (const auto& [v, per_row, what] :
         {std::tuple{&a.qkv, 3 * H, "W_pack output"}, std::tuple{&a.att, H, "attention output"},
          std::tuple{&a.x_mid, H, "hidden state after attention"}, std::tuple{&a.act, F, "MLP activation"},
          std::tuple{&a.x, H, "hidden state after the MLP"}})
      if (auto found = scan(*v, (L + (v == &a.x)) * N * per_row, per_row, layer + what); !found.empty()) return found;
  }
  return scan(a.lnf, 0, H, "model.norm output");
}

#define BAICHUAN_TRAIN_MODEL(T)                                                                          \
  template class TrainModel<T>;                                                                         \
  template TrainModel<T> load_train_model<T>(const Checkpoint&, bool);                                  \
  template void randomize<T>(TrainModel<T>&, uint64_t, double);                                         \
  template double forward_backward<T>(TrainModel<T>&, TrainContext<T>&, std::span<const Record>,        \
                                      const LossNorm&, ThreadPool&);                                    \
  template double forward_backward<T>(LoraModel<T>&, TrainContext<T>&, std::span<const Record>,         \
                                      const LossNorm&, ThreadPool&);                                    \
  template std::string find_non_finite<T>(TrainModel<T>&, const TrainContext<T>&);

BAICHUAN_TRAIN_MODEL(float)
BAICHUAN_TRAIN_MODEL(double)

}  // namespace baichuan::train
