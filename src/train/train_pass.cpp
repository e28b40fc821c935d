// The training pass over a batch: the forward through the layers, the NormHead and loss a chunk of
// rows at a time, and the backward, for full and LoRA fine-tuning (train_model.h, lora.h).
#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/error.h"
#include "train/frozen_linear.h"
#include "train/lora.h"
#include "train/train_batch.h"
#include "train/train_model.h"

namespace baichuan::train {

namespace {

template <typename T>
void zero(std::vector<T>& v, size_t n) {
  std::fill_n(grow_buffer(v, n), n, T(0));
}

// The model whose weights a pass reads, and the adapter it trains (nullptr: the model itself is trained).
template <typename T>
TrainModel<T>& base_of(TrainModel<T>& model) { return model; }
template <typename T>
TrainModel<T>& base_of(LoraModel<T>& lora) { return lora.base(); }
template <typename T>
LoraModel<T>* adapter_of(TrainModel<T>&) { return nullptr; }
template <typename T>
LoraModel<T>* adapter_of(LoraModel<T>& lora) { return &lora; }

// out = a + b over n elements (the residual connections).
template <typename T>
void add(T* out, const T* a, const T* b, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  }, 4096);
}

// NormHead and the loss over the rows the loss reads, from the final norm's output ctx.lnf, a chunk of
// kHeadChunkRows rows at a time (never a tokens x vocab matrix of logits). With `backward`: the
// gradient at lnf in ctx.dlnf, and the head's weight gradient added to `head_grad` unless it is null
// (a frozen head). `keep_normalized`: the head stays frozen for the context's life (LoRA). Returns the loss.
template <typename T>
double head_and_loss(TrainContext<T>& a, const TrainShape& s, const T* lm_head, T* head_grad,
                     const StoredWeights* stored, bool keep_normalized, const LossNorm& norm, bool backward,
                     ThreadPool& pool) {
  const int64_t N = a.batch * a.seq_len, H = s.hidden, V = s.vocab;
  const bool stored_head = stored && stored->head;
  // A frozen head is normalised once per context (V x H values, 2 GB for 7B: more than the layers
  // of a short batch cost to read); a trained one changes every step.
  // A stored head multiplies its rows as stored and divides the products by the rows' norms instead.
  if (!stored_head && (!keep_normalized || a.normalized_head != lm_head))
    normalize_rows_forward(a.head.data(), a.head_norm.data(), lm_head, V, H, pool);
  a.normalized_head = keep_normalized ? lm_head : nullptr;
  if (head_grad) zero(a.dhead, static_cast<size_t>(V * H));
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
    if (stored_head) {
      if constexpr (std::is_same_v<T, float>) stored_head_forward(a.logits.data(), a.head_in.data(), *stored, C, pool);
    } else {
      matmul_forward(a.logits.data(), a.head_in.data(), a.head.data(), C, H, V, pool);
    }
    cross_entropy_forward_backward(a.logits.data(), a.ce.data() + c0, a.z.data() + c0, a.head_targets.data(), C, V,
                                   ce_scale, z_scale, pool);
    if (!backward) continue;
    std::fill_n(a.dhead_in.data(), C * H, T(0));
    if (stored_head) {
      if constexpr (std::is_same_v<T, float>) stored_head_backward(a.dhead_in.data(), a.logits.data(), *stored, C, pool);
    } else {
      matmul_backward(a.dhead_in.data(), head_grad ? a.dhead.data() : nullptr, a.logits.data(), a.head_in.data(),
                      a.head.data(), C, H, V, pool);
    }
    for (int64_t r = 0; r < C; ++r)
      std::copy_n(a.dhead_in.data() + r * H, H, a.dlnf.data() + a.head_rows[static_cast<size_t>(c0 + r)].row * H);
  }
  if (head_grad) normalize_rows_backward(head_grad, a.dhead.data(), a.head.data(), a.head_norm.data(), V, H, pool);
  double ce_sum = 0, z_sum = 0;  // in row order, whatever the threads
  for (int64_t r = 0; r < n_head; ++r) {
    ce_sum += a.ce[static_cast<size_t>(r)];
    z_sum += a.z[static_cast<size_t>(r)];
  }
  return ce_sum * ce_scale + z_sum * z_scale;
}

// The pass of both kinds of training: full (lora == nullptr: every parameter's gradient) and LoRA
// (the base frozen: no base gradient, no weight-gradient products; the adapters' gradients).
// Without `backward`, only the loss (held-out evaluation): no gradient is computed or touched.
template <typename T>
double model_pass(TrainModel<T>& model, LoraModel<T>* lora, TrainContext<T>& a, std::span<const Record> batch,
                  const LossNorm& norm, ThreadPool& pool, bool backward) {
  const TrainShape& s = model.shape();
  const bool frozen = lora != nullptr || !backward;
  const StoredWeights* stored = model.stored();
  prepare_batch(a, s, batch, /*head_gradient=*/!frozen, /*float_head=*/!(stored && stored->head));
  if (norm.ce_tokens <= 0) fail("training batch: no label to learn (every shifted label is -100)");
  const int64_t N = a.batch * a.seq_len, H = s.hidden, F = s.ffn, L = s.layers;
  const QkvShape qs{a.batch, a.seq_len, s.heads, s.head_dim()};
  const bool rope = s.position == PositionEncoding::Rope;
  const T* slopes = rope ? nullptr : a.alibi_slopes.data();
  const T eps = static_cast<T>(s.rms_norm_eps);
  const Weights<T> w = model.weights();
  Weights<T> g{};  // all null when frozen
  if (!frozen) g = model.gradients();
  if (lora) lora_prepare(*lora, a, N);
  // The frozen weight of module t of layer l: float rows W, or the stored matrix of a quantized base.
  auto frozen_weight = [&](const T* W, int64_t I, int64_t O, int64_t l, LoraTarget t) {
    return FrozenLinear<T>{W, stored ? &stored->get(l, t) : nullptr, I, O};
  };
  // A linear layer (module t of layer l): out [N, O] = in [N, I] . W^T, plus its adapter.
  auto linear_forward = [&](T* out, const T* in, const T* W, int64_t I, int64_t O, int64_t l, LoraTarget t) {
    if (!lora && !stored) return matmul_forward(out, in, W, N, I, O, pool);
    frozen_linear_forward(out, in, frozen_weight(W, I, O, l, t), N, pool);
    if (const LoraSlot* slot = lora ? lora->slot(l, t) : nullptr) lora_forward(*lora, *slot, out, in, a, N, pool);
  };
  // Its backward: din += dout . W (and dW += dout^T . in when training the base). With the base
  // frozen, the gradient below layer 0's W_pack reaches only the frozen embedding: not computed.
  auto linear_backward = [&](T* din, T* dW, const T* dout, const T* in, const T* W, int64_t I, int64_t O, int64_t l,
                             LoraTarget t) {
    if (!frozen) return matmul_backward(din, dW, dout, in, W, N, I, O, pool);
    if (l > 0 || t != LoraTarget::WPack) frozen_linear_backward(din, dout, frozen_weight(W, I, O, l, t), N, pool);
    if (const LoraSlot* slot = lora->slot(l, t)) lora_backward(*lora, *slot, din, dout, in, a, N, pool);
  };
  // Per-layer slices of the stacked activations: the residual stream x(l) of every layer, and the
  // rest of layer l's (the one set of buffers when checkpointing: the layer at hand).
  auto x = [&](int64_t l) { return a.x.data() + l * N * H; };
  auto at = [&](std::vector<T>& v, int64_t l, int64_t per_row) {
    return v.data() + (a.checkpoint_activations ? 0 : l) * N * per_row;
  };
  // Layer l from its input x(l); writes x(l + 1) unless recomputing for the backward.
  auto layer_forward = [&](int64_t l, bool recompute) {
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
    if (recompute) return;  // the down projection's output is x(l + 1) - x_mid: not needed again
    linear_forward(a.tmp.data(), act, lw.down, F, H, l, LoraTarget::DownProj);
    add(x(l + 1), x_mid, a.tmp.data(), N * H, pool);
  };

  // ---- forward ----
  if (stored && stored->embed) {
    if constexpr (std::is_same_v<T, float>) stored_embedding_forward(x(0), a.ids.data(), *stored->embed, N);
  } else {
    embedding_forward(x(0), a.ids.data(), w.embed, N, H);
  }
  for (int64_t l = 0; l < L; ++l) layer_forward(l, false);
  rmsnorm_forward(a.lnf.data(), a.rstdf.data(), x(L), w.final_norm, N, H, eps, pool);

  // ---- NormHead and the loss (and their backward) ----
  const double loss = head_and_loss(a, s, w.lm_head, frozen ? nullptr : g.lm_head, stored,
                                    /*keep_normalized=*/lora != nullptr, norm, backward, pool);
  if (!backward) return loss;

  // ---- backward ----
  zero(a.dx, static_cast<size_t>(N * H));
  rmsnorm_backward(a.dx.data(), g.final_norm, a.dlnf.data(), x(L), w.final_norm, a.rstdf.data(), N, H, pool);
  for (int64_t l = L - 1; l >= 0; --l) {
    if (a.checkpoint_activations) layer_forward(l, true);
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
  return loss;
}

}  // namespace

template <typename Model>
double forward_backward(Model& model, TrainContext<typename Model::value_type>& ctx, std::span<const Record> batch,
                        const LossNorm& norm, ThreadPool& pool) {
  return model_pass(base_of(model), adapter_of(model), ctx, batch, norm, pool, /*backward=*/true);
}

template <typename Model>
double forward_loss(Model& model, TrainContext<typename Model::value_type>& ctx, std::span<const Record> batch,
                    const LossNorm& norm, ThreadPool& pool) {
  return model_pass(base_of(model), adapter_of(model), ctx, batch, norm, pool, /*backward=*/false);
}

template <typename Model>
std::string find_non_finite(Model& model, const TrainContext<typename Model::value_type>& a) {
  using T = typename Model::value_type;
  std::string found = model.non_finite_param();
  if (found.empty() && adapter_of(model)) found = base_of(model).non_finite_param();
  if (!found.empty()) return found;
  const TrainShape& s = base_of(model).shape();
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
    if (a.checkpoint_activations) {  // only the stream between layers is kept
      if (found = scan(a.x, (L + 1) * N * H, H, layer + "hidden state after the MLP"); !found.empty()) return found;
      continue;
    }
    for (const auto& [v, per_row, what] :
         {std::tuple{&a.qkv, 3 * H, "W_pack output"}, std::tuple{&a.att, H, "attention output"},
          std::tuple{&a.x_mid, H, "hidden state after attention"}, std::tuple{&a.act, F, "MLP activation"},
          std::tuple{&a.x, H, "hidden state after the MLP"}})
      if (found = scan(*v, (L + (v == &a.x)) * N * per_row, per_row, layer + what); !found.empty()) return found;
  }
  return scan(a.lnf, 0, H, "model.norm output");
}

#define BAICHUAN_TRAIN_PASS(Model)                                                                        \
  template double forward_backward<Model>(Model&, TrainContext<Model::value_type>&, std::span<const Record>, \
                                          const LossNorm&, ThreadPool&);                                     \
  template double forward_loss<Model>(Model&, TrainContext<Model::value_type>&, std::span<const Record>,     \
                                      const LossNorm&, ThreadPool&);                                         \
  template std::string find_non_finite<Model>(Model&, const TrainContext<Model::value_type>&);

BAICHUAN_TRAIN_PASS(TrainModel<float>)
BAICHUAN_TRAIN_PASS(TrainModel<double>)
BAICHUAN_TRAIN_PASS(LoraModel<float>)
BAICHUAN_TRAIN_PASS(LoraModel<double>)

}  // namespace baichuan::train
