// One caller's working memory for Model::forward: the activations of a batch, grown to the largest
// batch seen and reused, so decoding allocates nothing per token. A Model is read-only once loaded
// and is shared; every thread that runs forward passes owns a ModelContext (and its own ThreadPool:
// a pool runs one parallel_for at a time, so two callers never share one). This is llama.cpp's
// llama_model / llama_context split.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/matmul_input.h"
#include "model/kv_cache.h"

namespace baichuan {

class Model;

class ModelContext {
 public:
  // Bytes of the float scratch buffers now (they grow with the largest batch; the 8-bit copies of the
  // matrix inputs add about a quarter of `xn` more).
  size_t bytes() const;

 private:
  friend class Model;
  struct RowPosition {
    KvCache* cache;
    int64_t pos;
  };
  std::vector<float> x, xn, q, k, v, att, gate, up, head_in, logits;
  std::vector<RowPosition> rows;     // each row's cache and position, for RoPE and attention
  std::vector<float> rope;           // each row's RoPE rotation (kernels::rope_rotation), for every layer
  std::vector<int64_t> query_tiles;  // attention: first row of each tile of one sequence's rows
  kernels::MatmulInput input;        // the current input of the matrix products, quantized once
};

}  // namespace baichuan
