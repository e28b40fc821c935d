// LoRA adapters applied to a loaded model without merging: after each targeted projection the
// forward pass adds scale * B (A x), in float32, on the thread pool. The same deltas, laid out in the
// checkpoint's own row order, are what `merge-lora` adds to the weights (W += scale * B A).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "model/config.h"
#include "model/lora_adapter.h"

namespace baichuan {

// An adapter and the user's multiplier of its own scale (--lora ADAPTER:SCALE).
struct ScaledLoraAdapter {
  LoraAdapter adapter;
  float scale = 1.0f;
};

// The projections of the forward pass, by their canonical (GGUF) tensor roles.
enum class LoraProjection { Q, K, V, Output, Gate, Up, Down };
inline constexpr int kLoraProjectionCount = 7;

// "blk.3.attn_q.weight" -> {3, Q}; nullopt for tensors no adapter touches.
std::optional<std::pair<int64_t, LoraProjection>> lora_projection_of(const std::string& canonical_name);

class LoraDeltas {
 public:
  // Checks every adapter against `config` (Error naming the adapter and module). `qk_interleaved`: the
  // checkpoint keeps Q/K rows in GGUF's interleaved-pair order, so B's Q/K rows are permuted to match.
  LoraDeltas(const std::vector<ScaledLoraAdapter>& adapters, const ModelConfig& config, bool qk_interleaved);

  // y[n_rows, out] += sum over adapters of scale * B (A x[n_rows, in]) for this projection.
  void apply(int64_t layer, LoraProjection projection, const float* x, int64_t n_rows, float* y, ThreadPool& pool) const;
  // values[in] += sum over adapters of scale * (B A)[row] (row in the checkpoint's order), for merging.
  void add_to_row(int64_t layer, LoraProjection projection, int64_t row, float* values) const;
  bool adapts(int64_t layer, LoraProjection projection) const { return !terms(layer, projection).empty(); }

 private:
  struct Term {  // one adapter's share of one projection
    int64_t rank = 0, in = 0, out = 0;
    std::vector<float> a;  // [rank, in]
    std::vector<float> b;  // [out, rank], times the scale, rows in the checkpoint's order
  };
  const std::vector<Term>& terms(int64_t layer, LoraProjection p) const {
    static const std::vector<Term> none;
    const auto i = static_cast<size_t>(layer * kLoraProjectionCount + static_cast<int>(p));
    return layer >= 0 && i < terms_.size() ? terms_[i] : none;
  }
  std::vector<std::vector<Term>> terms_;  // [layer * kLoraProjectionCount + projection]
};

// The forward pass's hook: does nothing when no adapter is attached.
inline void add_lora_deltas(const LoraDeltas* lora, int64_t layer, LoraProjection projection, const float* x,
                            int64_t n_rows, float* y, ThreadPool& pool) {
  if (lora) lora->apply(layer, projection, x, n_rows, y, pool);
}

}  // namespace baichuan
