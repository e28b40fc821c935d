#include "model/lora_apply.h"

#include <functional>

#include "core/error.h"
#include "kernels/vec.h"
#include "model/checkpoint.h"
#include "model/gguf_checkpoint.h"

namespace baichuan {

namespace {

// The projections a target feeds, in the order of its weight's row blocks.
std::vector<LoraProjection> lora_projections_of(LoraTarget target) {
  switch (target) {
    case LoraTarget::WPack: return {LoraProjection::Q, LoraProjection::K, LoraProjection::V};
    case LoraTarget::OProj: return {LoraProjection::Output};
    case LoraTarget::GateProj: return {LoraProjection::Gate};
    case LoraTarget::UpProj: return {LoraProjection::Up};
    case LoraTarget::DownProj: return {LoraProjection::Down};
  }
  return {};
}

// Below this many multiply-adds a delta is computed on the calling thread.
constexpr int64_t kLoraInlineMacs = int64_t{1} << 18;

constexpr const char* kLoraProjectionRoles[kLoraProjectionCount] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                                    "ffn_gate", "ffn_up", "ffn_down"};

}  // namespace

std::optional<std::pair<int64_t, LoraProjection>> lora_projection_of(const std::string& name) {
  if (!name.starts_with("blk.") || !name.ends_with(".weight")) return std::nullopt;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return std::nullopt;
  int64_t layer = 0;
  try {
    layer = std::stoll(name.substr(4, dot - 4));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string role = name.substr(dot + 1, name.size() - dot - 1 - 7);
  for (int p = 0; p < kLoraProjectionCount; ++p)
    if (role == kLoraProjectionRoles[p]) return std::pair{layer, static_cast<LoraProjection>(p)};
  return std::nullopt;
}

LoraDeltas::LoraDeltas(const std::vector<ScaledLoraAdapter>& adapters, const ModelConfig& config, bool qk_interleaved)
    : terms_(static_cast<size_t>(config.num_layers * kLoraProjectionCount)) {
  const int64_t head_dim = config.head_dim();
  for (const auto& [adapter, user_scale] : adapters) {
    validate_lora_adapter(adapter, config);
    for (const LoraModule& m : adapter.modules) {
      const auto projections = lora_projections_of(m.target);
      const int64_t in = lora_in_features(config, m.target);
      const int64_t rows = lora_out_features(config, m.target) / static_cast<int64_t>(projections.size());
      const float scale = m.scale * user_scale;
      for (size_t i = 0; i < projections.size(); ++i) {
        const bool permute = qk_interleaved && (projections[i] == LoraProjection::Q || projections[i] == LoraProjection::K);
        Term t;
        t.rank = m.rank;
        t.in = in;
        t.out = rows;
        t.a = m.a;
        t.b.resize(static_cast<size_t>(rows * m.rank));
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t src = static_cast<int64_t>(i) * rows + (permute ? rotate_half_row(r, head_dim) : r);
          for (int64_t k = 0; k < m.rank; ++k)
            t.b[static_cast<size_t>(r * m.rank + k)] = m.b[static_cast<size_t>(src * m.rank + k)] * scale;
        }
        terms_[static_cast<size_t>(m.layer * kLoraProjectionCount + static_cast<int>(projections[i]))].push_back(std::move(t));
      }
    }
  }
}

void LoraDeltas::apply(int64_t layer, LoraProjection projection, const float* x, int64_t n_rows, float* y,
                       ThreadPool& pool) const {
  for (const Term& t : terms(layer, projection)) {
    // A x for every row, then B (A x) split by output rows: each value is computed by one thread in
    // one order, so the thread count does not change results. The buffer belongs to the calling
    // thread (grows to the largest batch, then is reused).
    thread_local std::vector<float> ax_buffer;
    if (ax_buffer.size() < static_cast<size_t>(n_rows * t.rank)) ax_buffer.resize(static_cast<size_t>(n_rows * t.rank));
    float* ax = ax_buffer.data();
    // A decoded token's delta is a few ten thousand multiply-adds: waking the pool for it costs more
    // than the work (it halved decoding speed on a loaded machine), so small products run inline.
    const bool inline_work = n_rows * t.rank * (t.in + t.out) < kLoraInlineMacs;
    auto run = [&](int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
      if (inline_work) {
        fn(0, n, 0);
      } else {
        pool.parallel_for(n, fn);
      }
    };
    run(n_rows * t.rank, [&](int64_t begin, int64_t end, int) {
      for (int64_t u = begin; u < end; ++u)
        ax[u] = kernels::dot_f32(t.a.data() + (u % t.rank) * t.in, x + (u / t.rank) * t.in, t.in);
    });
    run(t.out, [&](int64_t begin, int64_t end, int) {
      for (int64_t o = begin; o < end; ++o)
        for (int64_t row = 0; row < n_rows; ++row)
          y[row * t.out + o] += kernels::dot_f32(t.b.data() + o * t.rank, ax + row * t.rank, t.rank);
    });
  }
}

void LoraDeltas::add_to_row(int64_t layer, LoraProjection projection, int64_t row, float* values) const {
  for (const Term& t : terms(layer, projection)) {
    const float* b = t.b.data() + row * t.rank;
    for (int64_t c = 0; c < t.in; ++c) {
      double sum = 0;
      for (int64_t k = 0; k < t.rank; ++k) sum += static_cast<double>(b[k]) * t.a[static_cast<size_t>(k * t.in + c)];
      values[c] = static_cast<float>(values[c] + sum);
    }
  }
}

}  // namespace baichuan
