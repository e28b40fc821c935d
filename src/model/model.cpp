#include "model/model.h"

#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/vec.h"
#include "model/lora_apply.h"

namespace baichuan {

namespace {

using kernels::WeightMatrix;

// Row-wise steps run split by rows: a prompt has hundreds, one decoded token runs inline. Each row
// is one call whatever the split, so the thread count does not change results.
void rms_norm_rows(const float* x, const Tensor& weight, float eps, float* out, int64_t n_rows, int64_t n,
                   ThreadPool& pool) {
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) kernels::rms_norm(x + r * n, weight, eps, out + r * n, n);
  });
}

void silu_mul_rows(float* gate, const float* up, int64_t n_rows, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) kernels::silu_mul(gate + r * n, up + r * n, gate + r * n, n);
  });
}

void add_rows(float* x, const float* y, int64_t n_rows, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin * n; i < end * n; ++i) x[i] += y[i];
  });
}

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

Model::Model(Checkpoint checkpoint, ThreadPool* pool) : checkpoint_(std::move(checkpoint)) {
  validate_tensors(checkpoint_);
  const auto& cfg = checkpoint_.config;
  embed_ = checkpoint_.tensor("token_embd.weight");
  final_norm_ = checkpoint_.tensor("output_norm.weight");
  lm_head_ = WeightMatrix::from(checkpoint_.tensor("output.weight"));
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    auto m = [&](const char* role) { return WeightMatrix::from(checkpoint_.tensor(layer_tensor(l, role))); };
    layers_.push_back({checkpoint_.tensor(layer_tensor(l, "attn_norm")), checkpoint_.tensor(layer_tensor(l, "ffn_norm")),
                       m("attn_q"), m("attn_k"), m("attn_v"), m("attn_output"), m("ffn_gate"), m("ffn_up"),
                       m("ffn_down")});
  }
  if (cfg.position == PositionEncoding::Rope)
    rope_inv_freq_ = kernels::rope_inv_freq(cfg.head_dim(), cfg.rope_theta);
  else
    alibi_slopes_ = kernels::alibi_slopes(cfg.num_heads, cfg.max_alibi_bias);
  std::optional<ThreadPool> own_pool;
  if (!pool) pool = &own_pool.emplace(ThreadPool::default_threads());
  prepare(*pool);
}

void Model::set_kv_type(DType type) {
  KvCache probe(config(), 1, type);  // throws if the type or head size does not fit
  kv_type_ = type;
}

void Model::prepare(ThreadPool& pool) {
  const auto start = std::chrono::steady_clock::now();
  compute_head_norms(pool);  // before packing: it reads the head's rows in the file layout
  pack_matrices(pool);
  preparation_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Packs every matrix the SIMD kernels regroup (see can_pack); packing lets go of the file's copy,
// so the weights are resident once.
void Model::pack_matrices(ThreadPool& pool) {
  std::vector<kernels::WeightMatrix*> targets{&lm_head_};
  for (Layer& L : layers_)
    for (auto* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) targets.push_back(w);
  packed_.reserve(targets.size());
  for (kernels::WeightMatrix* w : targets) {
    if (!kernels::can_pack(*w)) continue;
    packed_.emplace_back(*w, pool);
    *w = packed_.back().view();
    preparation_.packed_bytes += packed_.back().bytes();
  }
  preparation_.packed_matrices = static_cast<int64_t>(packed_.size());
}

// NormHead: logits use each lm_head row divided by its L2 norm (idempotent, so files whose head is
// already normalised are fine). Folding 1/norm into the logits keeps the weights memory-mapped.
// Computed at load, with the constructor's thread pool.
void Model::compute_head_norms(ThreadPool& pool) {
  lm_head_inv_norm_.resize(static_cast<size_t>(lm_head_.rows));
  pool.parallel_for(lm_head_.rows, [&](int64_t begin, int64_t end, int) {
    std::vector<float> row(static_cast<size_t>(lm_head_.cols));
    for (int64_t r = begin; r < end; ++r) {
      kernels::row_to_f32(lm_head_.dtype, lm_head_.row(r), row.data(), lm_head_.cols);
      double sum = 0;
      for (float v : row) sum += static_cast<double>(v) * v;
      lm_head_inv_norm_[static_cast<size_t>(r)] = 1.0f / std::max(static_cast<float>(std::sqrt(sum)), 1e-12f);
    }
  });
}

void Model::forward(ModelContext& ctx, std::span<SequenceStep> steps, ThreadPool& pool) const {
  const auto& cfg = config();
  const int64_t H = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
  int64_t n_rows = 0, n_logit_rows = 0;
  for (auto& s : steps) {
    if (s.tokens.empty()) fail("forward: a sequence was given no tokens");
    if (s.cache->size() + static_cast<int64_t>(s.tokens.size()) > s.cache->capacity())
      fail("the context is full: ", s.cache->size(), " + ", s.tokens.size(), " tokens exceed the context size of ",
           s.cache->capacity(), " (use a larger --ctx)");
    for (int32_t id : s.tokens)
      if (id < 0 || id >= V) fail("token id ", id, " is outside the vocabulary of ", V);
    n_rows += static_cast<int64_t>(s.tokens.size());
    n_logit_rows += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
  }
  // Each row's cache and position, for RoPE and attention.
  ctx.rows.clear();
  for (auto& s : steps)
    for (size_t t = 0; t < s.tokens.size(); ++t) ctx.rows.push_back({s.cache, s.cache->size() + static_cast<int64_t>(t)});
  auto rows = static_cast<size_t>(n_rows);
  if (cfg.position == PositionEncoding::Rope) {  // sin and cos once per row, not per head and layer
    const auto pairs = static_cast<int64_t>(rope_inv_freq_.size());
    float* rope = grow(ctx.rope, rows * static_cast<size_t>(2 * pairs));
    for (int64_t r = 0; r < n_rows; ++r) kernels::rope_rotation(ctx.rows[static_cast<size_t>(r)].pos, rope_inv_freq_, rope + r * 2 * pairs);
  }
  float* x = grow(ctx.x, rows * H);
  float* xn = grow(ctx.xn, rows * H);
  float* q = grow(ctx.q, rows * H);
  float* k = grow(ctx.k, rows * H);
  float* v = grow(ctx.v, rows * H);
  float* att = grow(ctx.att, rows * H);
  float* gate = grow(ctx.gate, rows * F);
  float* up = grow(ctx.up, rows * F);

  int64_t g = 0;
  for (auto& s : steps)
    for (int32_t id : s.tokens) {
      kernels::row_to_f32(embed_.dtype, embed_.data + bytes_for(embed_.dtype, id * H, "token_embd"), x + g * H, H);
      ++g;
    }

  kernels::MatmulInput& input = ctx.input;
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    rms_norm_rows(x, L.attn_norm, cfg.rms_norm_eps, xn, n_rows, H, pool);
    input.reset(xn, n_rows, H);
    const kernels::MatmulOutput qkv[] = {{L.wq, q, H}, {L.wk, k, H}, {L.wv, v, H}};
    kernels::matmul(qkv, input, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::Q, xn, n_rows, q, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::K, xn, n_rows, k, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::V, xn, n_rows, v, pool);
    attention(ctx, l, n_rows, pool);
    input.reset(att, n_rows, H);
    kernels::matmul(L.wo, input, xn, H, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::Output, att, n_rows, xn, pool);
    add_rows(x, xn, n_rows, H, pool);

    rms_norm_rows(x, L.ffn_norm, cfg.rms_norm_eps, xn, n_rows, H, pool);
    input.reset(xn, n_rows, H);
    const kernels::MatmulOutput gate_up[] = {{L.gate, gate, F}, {L.up, up, F}};
    kernels::matmul(gate_up, input, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::Gate, xn, n_rows, gate, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::Up, xn, n_rows, up, pool);
    silu_mul_rows(gate, up, n_rows, F, pool);
    input.reset(gate, n_rows, F);
    kernels::matmul(L.down, input, xn, H, pool);
    add_lora_deltas(lora_.get(), l, LoraProjection::Down, gate, n_rows, xn, pool);
    add_rows(x, xn, n_rows, H, pool);
  }

  // Final norm and NormHead, only for the rows whose logits are wanted.
  float* head_in = grow(ctx.head_in, static_cast<size_t>(n_logit_rows * H));
  int64_t row = 0, out_row = 0;
  for (auto& s : steps) {
    auto n = static_cast<int64_t>(s.tokens.size());
    for (int64_t t = s.all_logits ? 0 : n - 1; t < n; ++t)
      kernels::rms_norm(x + (row + t) * H, final_norm_, cfg.rms_norm_eps, head_in + (out_row++) * H, H);
    row += n;
  }
  // One pass over the head for every row of every sequence, then each sequence's share.
  float* logits = grow(ctx.logits, static_cast<size_t>(n_logit_rows * V));
  input.reset(head_in, n_logit_rows, H);
  kernels::matmul(lm_head_, input, logits, V, pool);
  out_row = 0;
  for (auto& s : steps) {
    int64_t n = s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
    s.logits->resize(static_cast<size_t>(n * V));
    float* out = s.logits->data();
    for (int64_t t = 0; t < n; ++t, ++out_row)
      for (int64_t i = 0; i < V; ++i) out[t * V + i] = logits[out_row * V + i] * lm_head_inv_norm_[static_cast<size_t>(i)];
    s.cache->advance(static_cast<int64_t>(s.tokens.size()));
  }
}

void Model::attention(ModelContext& ctx, int64_t layer, int64_t n_rows, ThreadPool& pool) const {
  const auto& cfg = config();
  const int64_t H = cfg.hidden_size, n_heads = cfg.num_heads, d = cfg.head_dim();
  const bool rope = cfg.position == PositionEncoding::Rope;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  float *q = ctx.q.data(), *k = ctx.k.data(), *v = ctx.v.data(), *att = ctx.att.data();

  // Rotate Q and K at each row's position and append K, V to the row's cache.
  const auto& info = ctx.rows;
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end, int) {  // rows write distinct positions
    for (int64_t r = begin; r < end; ++r) {
      auto [cache, pos] = info[static_cast<size_t>(r)];
      if (rope) {
        const float* rotation = ctx.rope.data() + r * d;  // d / 2 (cos, sin) pairs
        for (int64_t h = 0; h < n_heads; ++h) {
          kernels::apply_rope(q + r * H + h * d, d, rotation, checkpoint_.qk_interleaved);
          kernels::apply_rope(k + r * H + h * d, d, rotation, checkpoint_.qk_interleaved);
        }
      }
      cache->store(layer, pos, k + r * H, v + r * H);
    }
  });

  // Causal attention: row r attends to positions [0, pos]. ALiBi adds slope_h * j to the score of
  // key j, as the official mask does (the same for every query row; softmax ignores the offset).
  // Rows of one sequence at consecutive positions go in tiles of up to kAttentionQueryTile, and each
  // (tile, head) is one blocked attention call (kernels/attention.h), whose work is linear in the
  // keys. Units run from the last tile down: later tiles see more keys, so the long ones start first.
  auto& tiles = ctx.query_tiles;  // first row of each tile
  tiles.clear();
  for (int64_t r = 0; r < n_rows; ++r) {
    const bool continues = !tiles.empty() && r - tiles.back() < kernels::kAttentionQueryTile &&
                           info[static_cast<size_t>(r)].cache == info[static_cast<size_t>(r - 1)].cache &&
                           info[static_cast<size_t>(r)].pos == info[static_cast<size_t>(r - 1)].pos + 1;
    if (!continues) tiles.push_back(r);
  }
  const auto n_tiles = static_cast<int64_t>(tiles.size());
  pool.parallel_for(n_tiles * n_heads, [&](int64_t begin, int64_t end, int) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t tile = n_tiles - 1 - unit / n_heads, h = unit % n_heads;
      const int64_t r0 = tiles[static_cast<size_t>(tile)];
      auto [cache, pos0] = info[static_cast<size_t>(r0)];
      kernels::AttentionHead head;
      head.queries = q + r0 * H + h * d;
      head.query_stride = H;
      head.n_queries = (tile + 1 < n_tiles ? tiles[static_cast<size_t>(tile + 1)] : n_rows) - r0;
      head.pos0 = pos0;
      head.keys = cache->key(layer, 0) + cache->head_offset(h);
      head.values = cache->value(layer, 0) + cache->head_offset(h);
      head.kv_stride = cache->position_stride();
      head.kv_type = cache->type();
      head.head_dim = d;
      head.scale = scale;
      head.alibi_slope = rope ? 0.0f : alibi_slopes_[static_cast<size_t>(h)];
      head.out = att + r0 * H + h * d;
      head.out_stride = H;
      kernels::attend(head);
    }
  });
}

std::vector<float> Model::forward_last(ModelContext& ctx, KvCache& cache, std::span<const int32_t> tokens,
                                       ThreadPool& pool) const {
  std::vector<float> logits;
  SequenceStep step{&cache, tokens, false, &logits};
  forward(ctx, std::span<SequenceStep>(&step, 1), pool);
  return logits;
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options, ThreadPool* pool) {
  return std::make_unique<Model>(open_checkpoint(path, options), pool);
}

}  // namespace baichuan
