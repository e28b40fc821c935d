// Baichuan 2 bound to its weights: the forward pass over a batch of sequences, each with its own KV
// cache and at its own position. Reads like the math: embed, then per layer
//   x += o_proj(attention(rope_or_alibi(W_pack(rms_norm(x)))))
//   x += down(silu(gate(rms_norm(x))) * up(rms_norm(x)))
// then rms_norm and the NormHead (each lm_head row divided by its L2 norm).
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"

namespace baichuan {

class LoraDeltas;

// One sequence's share of a forward step: feed `tokens` at the cache's next positions.
struct SequenceStep {
  KvCache* cache = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;     // logits for every token fed, or only for the last one
  std::vector<float>* logits;  // out: rows x vocab_size floats
};

class Model {
 public:
  explicit Model(Checkpoint checkpoint);

  const ModelConfig& config() const { return checkpoint_.config; }
  const GenerationConfig& generation() const { return checkpoint_.generation; }
  const Tokenizer& tokenizer() const { return *checkpoint_.tokenizer; }
  const Checkpoint& checkpoint() const { return checkpoint_; }

  // A cache of the model's KV type (F16 unless set_kv_type says otherwise).
  KvCache new_cache(int64_t capacity) const { return KvCache(config(), capacity, kv_type_); }
  void set_kv_type(DType type);
  DType kv_type() const { return kv_type_; }
  // LoRA adapters applied unmerged from the next forward pass on (nullptr: none); see lora_apply.h.
  void attach_lora(std::shared_ptr<const LoraDeltas> lora) { lora_ = std::move(lora); }

  // Runs every step together: the weights are read once for all sequences. Throws Error if a
  // sequence would overflow its cache or a token id is outside the vocabulary.
  void forward(std::span<SequenceStep> steps, ThreadPool& pool);
  // Convenience for one sequence: returns the logits of the last token.
  std::vector<float> forward_last(KvCache& cache, std::span<const int32_t> tokens, ThreadPool& pool);

 private:
  struct Layer {
    Tensor attn_norm, ffn_norm;
    kernels::WeightMatrix wq, wk, wv, wo, gate, up, down;
  };
  struct RowPosition {
    KvCache* cache;
    int64_t pos;
  };
  struct Workspace {  // grows to the largest batch seen; reused across steps
    std::vector<float> x, xn, q, k, v, att, gate, up, head_in, logits;
    std::vector<RowPosition> rows;
    std::vector<int64_t> query_tiles;  // attention: first row of each tile of one sequence's rows
    kernels::Activations input;  // the current input of the matrix products, quantized once
  };

  void attention(int64_t layer, int64_t n_rows, ThreadPool& pool);
  // Work done once, with the first forward pass's threads: NormHead row norms, then packing the
  // matrices the SIMD kernels want regrouped.
  void prepare(ThreadPool& pool);
  void compute_head_norms(ThreadPool& pool);
  void pack_matrices(ThreadPool& pool);

  Checkpoint checkpoint_;
  Tensor embed_, final_norm_;
  kernels::WeightMatrix lm_head_;
  std::vector<float> lm_head_inv_norm_;
  bool prepared_ = false;
  std::vector<kernels::PackedMatrix> packed_;  // owners of the packed matrices the layers point at
  DType kv_type_ = DType::F16;
  std::vector<Layer> layers_;
  std::vector<float> rope_inv_freq_, alibi_slopes_;
  Workspace ws_;
  std::shared_ptr<const LoraDeltas> lora_;
};

// Loads a checkpoint (see open_checkpoint) and binds it.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace baichuan
