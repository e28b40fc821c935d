#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/ops.h"
#include "kernels/vec.h"
#include "train/frozen_linear.h"
#include "train/lora.h"

namespace baichuan::train {

namespace {

constexpr int32_t kIgnoreIndex = -100;  // CrossEntropyLoss's ignore_index, the official label padding

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
TrainModel<T>::TrainModel(const TrainShape& shape, bool with_gradients) : shape_(shape), layout_(param_layout(shape)) {
  check_train_shape(shape);
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

namespace {

// The stored row of row r of a layer matrix in the official layout. GGUF keeps Q and K rows of each
// head in interleaved-pair order: rows (i, i + d/2) of the official layout sit at rows (2i, 2i + 1).
int64_t official_to_stored_row(const Checkpoint& c, const TrainShape& s, const std::string& role, int64_t r) {
  if (!c.qk_interleaved || (role != "attn_q" && role != "attn_k")) return r;
  const int64_t d = s.head_dim(), head = r / d, within = r % d, half = d / 2;
  return head * d + (within < half ? 2 * within : 2 * (within - half) + 1);
}

// Copies every checkpoint tensor whose destination in `model` is not null (the layer matrices of a
// stored base are) to float, in the official row order; with `release`, lets go of the file's pages.
template <typename T>
void copy_float_weights(TrainModel<T>& model, const Checkpoint& c, bool release) {
  const TrainShape& s = model.shape();
  Weights<T> w = model.weights();
  std::vector<float> row;
  auto copy = [&](const std::string& role, const std::string& canonical, T* dst) {
    if (!dst) return;
    const Tensor& t = c.tensor(canonical);
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
    const size_t row_bytes = bytes_for(t.dtype, cols, t.name);
    row.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      const auto stored = static_cast<size_t>(official_to_stored_row(c, s, role, r));
      kernels::row_to_f32(t.dtype, t.data + stored * row_bytes, row.data(), cols);
      std::copy(row.begin(), row.end(), dst + r * cols);
    }
    if (release) MappedFile::release_pages(t.data, t.nbytes);
  };
  copy("", "token_embd.weight", w.embed);
  const int64_t HH = s.hidden * s.hidden;
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    auto layer = [&](const std::string& role, T* dst) { copy(role, layer_tensor(l, role), dst); };
    layer("attn_q", L.w_pack);
    layer("attn_k", L.w_pack ? L.w_pack + HH : nullptr);
    layer("attn_v", L.w_pack ? L.w_pack + 2 * HH : nullptr);
    layer("attn_output", L.o_proj);
    layer("ffn_gate", L.gate);
    layer("ffn_up", L.up);
    layer("ffn_down", L.down);
    layer("attn_norm", L.attn_norm);
    layer("ffn_norm", L.ffn_norm);
  }
  copy("", "output_norm.weight", w.final_norm);
  copy("", "output.weight", w.lm_head);
}

// The row blocks of every matrix a frozen base may keep stored: {canonical name, role} per block.
std::vector<std::vector<std::pair<std::string, std::string>>> layer_matrix_sources(const TrainShape& s) {
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  for (int64_t l = 0; l < s.layers; ++l)
    for (LoraTarget t : kLoraTargets) {
      auto& blocks = out.emplace_back();
      for (const std::string& role : lora_gguf_roles(t)) blocks.emplace_back(layer_tensor(l, role), role);
    }
  return out;
}

// Whether a frozen base keeps anything in a stored type: it does when a layer matrix, the embedding
// or the head is in a type with an integer dot product.
bool has_stored_matrices(const Checkpoint& c, const TrainShape& s) {
  for (const auto& blocks : layer_matrix_sources(s))
    for (const auto& [name, role] : blocks)
      if (keeps_stored_type(c.tensor(name).dtype)) return true;
  return keeps_stored_type(c.tensor("token_embd.weight").dtype) || keeps_stored_type(c.tensor("output.weight").dtype);
}

// The type a stored base keeps a layer matrix in: its own, or F32.
DType stored_base_type(DType type) { return keeps_stored_type(type) ? type : DType::F32; }

}  // namespace

template <typename T>
TrainModel<T> load_train_model(const Checkpoint& c, bool with_gradients) {
  validate_tensors(c);
  TrainModel<T> model(TrainShape::from(c.config), with_gradients);
  copy_float_weights(model, c, /*release=*/false);
  return model;
}

TrainModel<float> load_frozen_base(const Checkpoint& c) {
  validate_tensors(c);
  const TrainShape s = TrainShape::from(c.config);
  if (!has_stored_matrices(c, s)) return load_train_model<float>(c, /*with_gradients=*/false);
  const bool embed_stored = keeps_stored_type(c.tensor("token_embd.weight").dtype),
             head_stored = keeps_stored_type(c.tensor("output.weight").dtype);
  auto sources = layer_matrix_sources(s);
  using Block = std::pair<std::string, std::string>;
  if (embed_stored) sources.push_back({Block{"token_embd.weight", ""}});
  if (head_stored) sources.push_back({Block{"output.weight", ""}});
  // Sizes first, then one buffer holding every matrix's rows in the official order.
  size_t total = 0;
  for (const auto& blocks : sources)
    for (const auto& [name, role] : blocks) {
      const Tensor& src = c.tensor(name);
      total += static_cast<size_t>(src.shape[0]) * bytes_for(stored_base_type(src.dtype), src.shape[1], src.name);
    }
  HugeBuffer bytes(total);
  std::vector<StoredMatrix> matrices;
  std::byte* dst = bytes.data();
  std::vector<float> row;
  for (const auto& blocks : sources) {
    StoredMatrix m;
    for (const auto& [name, role] : blocks) {
      const Tensor& src = c.tensor(name);
      kernels::WeightMatrix part;
      part.dtype = stored_base_type(src.dtype);
      part.data = dst;
      part.rows = src.shape[0];
      part.cols = src.shape[1];
      part.row_bytes = bytes_for(part.dtype, part.cols, src.name);
      const size_t src_row_bytes = bytes_for(src.dtype, part.cols, src.name);
      row.resize(static_cast<size_t>(part.cols));
      for (int64_t r = 0; r < part.rows; ++r) {
        const std::byte* from = src.data + static_cast<size_t>(official_to_stored_row(c, s, role, r)) * src_row_bytes;
        if (part.dtype == src.dtype) {
          std::copy_n(from, part.row_bytes, dst + static_cast<size_t>(r) * part.row_bytes);
        } else {
          kernels::row_to_f32(src.dtype, from, row.data(), part.cols);
          std::copy_n(reinterpret_cast<const std::byte*>(row.data()), part.row_bytes,
                      dst + static_cast<size_t>(r) * part.row_bytes);
        }
      }
      MappedFile::release_pages(src.data, src.nbytes);
      dst += static_cast<size_t>(part.rows) * part.row_bytes;
      m.in = part.cols;
      m.out += part.rows;
      m.parts.push_back(part);
    }
    matrices.push_back(std::move(m));
  }
  std::optional<StoredMatrix> head, embed;
  if (head_stored) {
    head = std::move(matrices.back());
    matrices.pop_back();
  }
  if (embed_stored) {
    embed = std::move(matrices.back());
    matrices.pop_back();
  }
  auto stored = std::make_shared<StoredWeights>(std::move(bytes), std::move(matrices), s.layers);
  stored->embed = std::move(embed);
  if (head) {  // F.normalize's norms of the stored rows, for the NormHead
    const kernels::WeightMatrix& w = head->parts[0];
    stored->head_inv_norm.resize(static_cast<size_t>(w.rows));
    for (int64_t r = 0; r < w.rows; ++r) {
      kernels::row_to_f32(w.dtype, w.row(r), row.data(), w.cols);
      double sum_sq = 0;
      for (float v : row) sum_sq += static_cast<double>(v) * v;
      stored->head_inv_norm[static_cast<size_t>(r)] = static_cast<float>(1.0 / std::max(std::sqrt(sum_sq), 1e-12));
    }
    stored->head = std::move(head);
  }
  ThreadPool pool(1);  // a memory copy: one thread keeps up
  stored->pack(pool);
  TrainModel<float> model(s, std::shared_ptr<const StoredWeights>(std::move(stored)));
  copy_float_weights(model, c, /*release=*/true);
  return model;
}

FrozenBaseSize frozen_base_size(const Checkpoint& c) {
  const TrainShape s = TrainShape::from(c.config);
  uint64_t floats = 0;
  for (const ParamInfo& p : param_layout(s)) floats += p.numel;
  if (!has_stored_matrices(c, s)) return {floats * sizeof(float), "", false};
  FrozenBaseSize size;
  std::vector<DType> seen;
  auto add = [&](const Tensor& src) {
    const DType type = stored_base_type(src.dtype);
    floats -= static_cast<uint64_t>(src.shape[0] * src.shape[1]);
    size.bytes += static_cast<uint64_t>(src.shape[0]) * bytes_for(type, src.shape[1], src.name);
    if (type != DType::F32 && std::find(seen.begin(), seen.end(), type) == seen.end()) seen.push_back(type);
  };
  for (const auto& blocks : layer_matrix_sources(s))
    for (const auto& [name, role] : blocks) add(c.tensor(name));
  if (keeps_stored_type(c.tensor("token_embd.weight").dtype)) add(c.tensor("token_embd.weight"));
  if (keeps_stored_type(c.tensor("output.weight").dtype)) {
    add(c.tensor("output.weight"));
    size.bytes += static_cast<uint64_t>(s.vocab) * sizeof(float);  // head_inv_norm
    size.stored_head = true;
  }
  size.bytes += floats * sizeof(float);
  for (DType t : seen) size.stored_types += (size.stored_types.empty() ? "" : ", ") + std::string(dtype_info(t).name);
  return size;
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

// The positions of a batch that are computed: up to the last token or label of its longest record.
// The padding after it changes neither the loss nor a gradient: attention is causal, so no earlier
// position sees it, and its labels are -100; its outputs would be exact zeros in every sum. So it is
// cut, as a collator padding to the longest record does (the official script pads every record to
// seq_length). Not with z-loss: the official z-loss averages over every position, padding included.
int64_t computed_length(const TrainShape& s, std::span<const Record> batch) {
  const auto Tn = static_cast<int64_t>(batch[0].input_ids.size());
  if (s.z_loss_weight != 0) return Tn;
  int64_t length = 2;
  for (const Record& r : batch)
    for (auto t = static_cast<int64_t>(std::min(r.input_ids.size(), r.labels.size())) - 1; t >= length; --t)
      if (r.input_ids[static_cast<size_t>(t)] != s.pad_token_id || r.labels[static_cast<size_t>(t)] != kIgnoreIndex) {
        length = t + 1;
        break;
      }
  return std::min(length, Tn);
}

// Checks the batch and fills ids, the key mask and the rows the loss reads; sizes the buffers.
template <typename T>
void prepare(TrainContext<T>& a, const TrainShape& s, std::span<const Record> batch, bool head_gradient,
             bool float_head) {
  if (batch.empty()) fail("training batch: no records");
  const auto B = static_cast<int64_t>(batch.size());
  const auto Tn = static_cast<int64_t>(batch[0].input_ids.size());
  if (Tn < 2) fail("training batch: record 0 has ", Tn, " tokens; a record needs at least 2");
  const int64_t Tc = computed_length(s, batch);
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
      if (t >= Tc) continue;
      a.ids.push_back(id);
      a.key_mask.push_back(id != s.pad_token_id);
      // Row t predicts labels[t + 1]; with z-loss every row but the last is read.
      if (t + 1 < Tc) {
        const int32_t next = r.labels[static_cast<size_t>(t + 1)];
        if (next != kIgnoreIndex || s.z_loss_weight != 0)
          a.head_rows.push_back({b * Tc + t, next == kIgnoreIndex ? -1 : next});
      }
    }
  }
  if (a.batch != B || a.seq_len != Tc) {
    a.batch = B;
    a.seq_len = Tc;
    if (s.position == PositionEncoding::Rope) a.rope = rope_table<T>(Tc, s.head_dim(), s.rope_theta);
    if (s.position == PositionEncoding::Alibi) {
      const std::vector<float> slopes = kernels::alibi_slopes(s.heads, s.max_alibi_bias);
      a.alibi_slopes.assign(slopes.begin(), slopes.end());
    }
  }
  const auto N = static_cast<size_t>(B * Tn), H = static_cast<size_t>(s.hidden), F = static_cast<size_t>(s.ffn),
             L = static_cast<size_t>(s.layers), V = static_cast<size_t>(s.vocab), nh = static_cast<size_t>(s.heads);
  grow(a.x, (L + 1) * N * H);
  const size_t kept = a.checkpoint_activations ? 1 : L;  // layers whose activations are kept
  for (auto* v : {&a.ln1, &a.att, &a.x_mid, &a.ln2}) grow(*v, kept * N * H);
  for (auto* v : {&a.rstd1, &a.rstd2}) grow(*v, kept * N);
  grow(a.qkv, kept * N * 3 * H);
  grow(a.lse, kept * nh * N);
  for (auto* v : {&a.gate, &a.up, &a.act}) grow(*v, kept * N * F);
  grow(a.lnf, N * H);
  grow(a.rstdf, N);
  if (float_head) {
    grow(a.head, V * H);
    grow(a.head_norm, V);
  }
  if (head_gradient) grow(a.dhead, V * H);
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
// Without `backward`, only the loss (held-out evaluation): no gradient is computed or touched.
template <typename T>
double model_pass(TrainModel<T>& model, LoraModel<T>* lora, TrainContext<T>& a, std::span<const Record> batch,
                  const LossNorm& norm, ThreadPool& pool, bool backward) {
  const TrainShape& s = model.shape();
  const bool frozen = lora != nullptr || !backward;
  const StoredWeights* stored = model.stored();
  const StoredMatrix* stored_head = stored && stored->head ? &*stored->head : nullptr;
  prepare(a, s, batch, !frozen, stored_head == nullptr);
  if (norm.ce_tokens <= 0) fail("training batch: no label to learn (every shifted label is -100)");
  const int64_t N = a.batch * a.seq_len, H = s.hidden, F = s.ffn, V = s.vocab, L = s.layers;
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

  // ---- NormHead, loss and their backward, a chunk of rows at a time ----
  // A frozen head is normalised once per context (V x H values, 2 GB for 7B: more than the layers
  // of a short batch cost to read); a trained one changes every step.
  // A stored head multiplies its rows as stored and divides the products by the rows' norms instead.
  if (!stored_head && (!lora || a.normalized_head != w.lm_head))
    normalize_rows_forward(a.head.data(), a.head_norm.data(), w.lm_head, V, H, pool);
  a.normalized_head = lora ? w.lm_head : nullptr;
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
      matmul_backward(a.dhead_in.data(), frozen ? nullptr : a.dhead.data(), a.logits.data(), a.head_in.data(),
                      a.head.data(), C, H, V, pool);
    }
    for (int64_t r = 0; r < C; ++r)
      std::copy_n(a.dhead_in.data() + r * H, H, a.dlnf.data() + a.head_rows[static_cast<size_t>(c0 + r)].row * H);
  }
  if (!frozen) normalize_rows_backward(g.lm_head, a.dhead.data(), a.head.data(), a.head_norm.data(), V, H, pool);
  double ce_sum = 0, z_sum = 0;  // in row order, whatever the threads
  for (int64_t r = 0; r < n_head; ++r) {
    ce_sum += a.ce[static_cast<size_t>(r)];
    z_sum += a.z[static_cast<size_t>(r)];
  }
  const double loss = ce_sum * ce_scale + z_sum * z_scale;
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

template <typename T>
double forward_backward(TrainModel<T>& model, TrainContext<T>& ctx, std::span<const Record> batch,
                        const LossNorm& norm, ThreadPool& pool) {
  return model_pass<T>(model, nullptr, ctx, batch, norm, pool, true);
}

template <typename T>
double forward_backward(LoraModel<T>& lora, TrainContext<T>& ctx, std::span<const Record> batch, const LossNorm& norm,
                        ThreadPool& pool) {
  return model_pass(lora.base(), &lora, ctx, batch, norm, pool, true);
}

template <typename T>
double forward_loss(TrainModel<T>& model, TrainContext<T>& ctx, std::span<const Record> batch, const LossNorm& norm,
                    ThreadPool& pool) {
  return model_pass<T>(model, nullptr, ctx, batch, norm, pool, false);
}

template <typename T>
double forward_loss(LoraModel<T>& lora, TrainContext<T>& ctx, std::span<const Record> batch, const LossNorm& norm,
                    ThreadPool& pool) {
  return model_pass(lora.base(), &lora, ctx, batch, norm, pool, false);
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
    if (a.checkpoint_activations) {  // only the stream between layers is kept
      if (auto found = scan(a.x, (L + 1) * N * H, H, layer + "hidden state after the MLP"); !found.empty()) return found;
      continue;
    }
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
  template double forward_loss<T>(TrainModel<T>&, TrainContext<T>&, std::span<const Record>,            \
                                  const LossNorm&, ThreadPool&);                                        \
  template double forward_loss<T>(LoraModel<T>&, TrainContext<T>&, std::span<const Record>,             \
                                  const LossNorm&, ThreadPool&);                                        \
  template std::string find_non_finite<T>(TrainModel<T>&, const TrainContext<T>&);

BAICHUAN_TRAIN_MODEL(float)
BAICHUAN_TRAIN_MODEL(double)

}  // namespace baichuan::train
