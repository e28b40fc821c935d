#include "train/lora_merge.h"

#include "core/error.h"

namespace baichuan::train {

void merge_lora_deltas(TrainModel<float>& model, const LoraDeltas& deltas, ThreadPool& pool) {
  if (model.stored()) fail("merging LoRA adapters needs every layer matrix in float32, not a stored quantized base");
  const TrainShape& s = model.shape();
  Weights<float> w = model.weights();
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    // Each projection's rows in its official matrix: W_pack is Q, K, V row blocks of `hidden` rows.
    struct Block {
      LoraProjection projection;
      float* rows;
      int64_t count, cols;
    };
    const int64_t H = s.hidden, F = s.ffn;
    const Block blocks[] = {{LoraProjection::Q, L.w_pack, H, H},          {LoraProjection::K, L.w_pack + H * H, H, H},
                            {LoraProjection::V, L.w_pack + 2 * H * H, H, H}, {LoraProjection::Output, L.o_proj, H, H},
                            {LoraProjection::Gate, L.gate, F, H},          {LoraProjection::Up, L.up, F, H},
                            {LoraProjection::Down, L.down, H, F}};
    for (const Block& b : blocks) {
      if (!deltas.adapts(l, b.projection)) continue;
      pool.parallel_for(b.count, [&](int64_t begin, int64_t end, int) {
        for (int64_t r = begin; r < end; ++r) deltas.add_to_row(l, b.projection, r, b.rows + r * b.cols);
      });
    }
  }
}

}  // namespace baichuan::train
