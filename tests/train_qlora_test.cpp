// QLoRA and activation checkpointing: the transposed product through stored block rows against a
// double reference (every block type with an integer dot product) and bit-identical to the float
// backward on the dequantized matrix; LoRA on a Q8_0 base against the same base dequantized to float32;
// a Q4_0 LoRA run lowering the loss; -t 1 vs -t 2 on a mixed Q4_K/Q6_K base; activation checkpointing
// bit-identical (full, LoRA, quantized base) and smaller in the memory plan.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <random>

#include "core/error.h"
#include "kernels/cpu.h"
#include "kernels/packed_matrix.h"
#include "kernels/vec.h"
#include "quant/type_traits.h"
#include "train/frozen_linear.h"
#include "train/lora.h"
#include "train/memory_plan.h"
#include "train/trainer.h"
#include "train_fixtures.h"

namespace baichuan::train {
namespace train_qlora_test {  // named, not anonymous: the tests compile as a unity build

std::vector<float> random_floats(size_t n, uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(normal(rng));
  return v;
}

// A [rows, cols] float matrix quantized row by row to `type`.
struct QuantizedRows {
  std::vector<std::byte> bytes;
  kernels::WeightMatrix view;
};

QuantizedRows quantize_rows(const float* w, int64_t rows, int64_t cols, DType type) {
  QuantizedRows q;
  const size_t row_bytes = bytes_for(type, cols, "test matrix");
  q.bytes.resize(static_cast<size_t>(rows) * row_bytes);
  for (int64_t r = 0; r < rows; ++r) quant::from_float_row(type, w + r * cols, q.bytes.data() + r * row_bytes, cols);
  q.view.dtype = type;
  q.view.data = q.bytes.data();
  q.view.rows = rows;
  q.view.cols = cols;
  q.view.row_bytes = row_bytes;
  return q;
}

// The float matrix a StoredMatrix holds.
std::vector<float> dequantized(const StoredMatrix& m) {
  std::vector<float> w(static_cast<size_t>(m.out * m.in));
  int64_t o = 0;
  for (const kernels::WeightMatrix& p : m.parts)
    for (int64_t r = 0; r < p.rows; ++r, ++o) kernels::row_to_f32(p.dtype, p.row(r), w.data() + o * m.in, m.in);
  return w;
}

std::vector<DType> stored_types() {
  std::vector<DType> out;
  for (size_t i = 0; i < kDTypeCount; ++i) {
    const auto t = static_cast<DType>(i);
    if (keeps_stored_type(t) && quant::type_traits(t).from_float) out.push_back(t);
  }
  return out;
}

// A Checkpoint in memory holding `model`'s weights under the canonical names: layer matrices in
// `matrix_type` (V rows in `v_type`), embedding and head in `embed_head_type`, norms F32; GGUF's
// permuted Q/K rows when `interleaved`.
struct MemoryCheckpoint {
  Checkpoint checkpoint;
  std::vector<std::vector<std::byte>> storage;
};

MemoryCheckpoint checkpoint_of(TrainModel<float>& model, DType matrix_type, DType v_type, bool interleaved,
                               DType embed_head_type = DType::F32) {
  const TrainShape& s = model.shape();
  MemoryCheckpoint m;
  m.checkpoint.config = train_fixtures::config_of_shape(s);
  m.checkpoint.qk_interleaved = interleaved;
  m.storage.reserve(256);
  auto add = [&](const std::string& name, const float* src, int64_t rows, int64_t cols, DType type, bool permute) {
    std::vector<float> ordered(src, src + rows * cols);
    if (permute) {  // official row r is stored at row 2i / 2i + 1 of its head (llama.cpp's permutation)
      const int64_t d = s.head_dim(), half = d / 2;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t head = r / d, i = r % d, stored = head * d + (i < half ? 2 * i : 2 * (i - half) + 1);
        std::copy_n(src + r * cols, cols, ordered.data() + stored * cols);
      }
    }
    const size_t row_bytes = bytes_for(type, cols, name);
    std::vector<std::byte>& bytes = m.storage.emplace_back(static_cast<size_t>(rows) * row_bytes);
    for (int64_t r = 0; r < rows; ++r)
      quant::from_float_row(type, ordered.data() + r * cols, bytes.data() + r * row_bytes, cols);
    Tensor t;
    t.name = name;
    t.dtype = type;
    t.shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    t.data = bytes.data();
    t.nbytes = bytes.size();
    m.checkpoint.tensors[name] = t;
  };
  const Weights<float> w = model.weights();
  const int64_t H = s.hidden, F = s.ffn;
  add("token_embd.weight", w.embed, s.vocab, H, embed_head_type, false);
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    add(layer_tensor(l, "attn_q"), L.w_pack, H, H, matrix_type, interleaved);
    add(layer_tensor(l, "attn_k"), L.w_pack + H * H, H, H, matrix_type, interleaved);
    add(layer_tensor(l, "attn_v"), L.w_pack + 2 * H * H, H, H, v_type, false);
    add(layer_tensor(l, "attn_output"), L.o_proj, H, H, matrix_type, false);
    add(layer_tensor(l, "ffn_gate"), L.gate, F, H, matrix_type, false);
    add(layer_tensor(l, "ffn_up"), L.up, F, H, matrix_type, false);
    add(layer_tensor(l, "ffn_down"), L.down, H, F, matrix_type, false);
    add(layer_tensor(l, "attn_norm"), L.attn_norm, 1, H, DType::F32, false);
    add(layer_tensor(l, "ffn_norm"), L.ffn_norm, 1, H, DType::F32, false);
  }
  add("output_norm.weight", w.final_norm, 1, H, DType::F32, false);
  add("output.weight", w.lm_head, s.vocab, H, embed_head_type, false);
  return m;
}

TrainShape qlora_shape(PositionEncoding position, int64_t hidden, int64_t ffn) {
  return train_fixtures::small_shape(position, 300, hidden, 4, ffn);
}

// B = 0 makes A's gradient 0: give both random values.
void randomize_adapter(LoraModel<float>& lora, uint64_t seed) {
  const std::vector<float> v = random_floats(lora.params().size(), seed, 0.1);
  std::copy(v.begin(), v.end(), lora.params().begin());
}

double lora_pass(LoraModel<float>& lora, TrainContext<float>& ctx, const std::vector<Record>& batch, ThreadPool& pool) {
  lora.zero_grads();
  return forward_backward(lora, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
}

const char* const kAllTargets = "r=4,alpha=8,dropout=0.1,targets=W_pack,o_proj,gate_proj,up_proj,down_proj";

}  // namespace train_qlora_test

using namespace train_qlora_test;

TEST(TrainQlora, StoredBackwardMatchesReferenceForEveryBlockType) {
  ThreadPool pool(2);
  const std::vector<DType> types = stored_types();
  ASSERT_GE(types.size(), 8u);  // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K at least
  const int64_t I = 512, N = 7;
  for (DType type : types) {
    SCOPED_TRACE(dtype_info(type).name);
    // Three row blocks of different heights (W_pack's Q, K, V), the last one F32, as in a mix.
    const std::vector<float> w = random_floats(static_cast<size_t>((40 + 24 + 8) * I), 5, 0.05);
    const QuantizedRows a = quantize_rows(w.data(), 40, I, type), b = quantize_rows(w.data() + 40 * I, 24, I, type),
                        c = quantize_rows(w.data() + 64 * I, 8, I, DType::F32);
    const StoredMatrix m{{a.view, b.view, c.view}, I, 72};
    const std::vector<float> dout = random_floats(static_cast<size_t>(N * m.out), 6, 1.0);
    const std::vector<float> start = random_floats(static_cast<size_t>(N * I), 7, 1.0);
    std::vector<float> got = start, want = start, floats = start;
    stored_matrix_backward(got.data(), dout.data(), m, N, pool);
    stored_matrix_backward_reference(want.data(), dout.data(), m, N);
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      max_err = std::max(max_err, std::abs(static_cast<double>(got[i]) - want[i]));
      max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i] - start[i])));
    }
    EXPECT_GT(max_ref, 0.1);
    EXPECT_LT(max_err / max_ref, 1e-5);  // float sums of 72 terms against double
    // The same bits as the float backward on the dequantized matrix: the QLoRA pass only differs from
    // a float base in its forward.
    const std::vector<float> wf = dequantized(m);
    matmul_backward(floats.data(), static_cast<float*>(nullptr), dout.data(), static_cast<const float*>(nullptr),
                    wf.data(), N, I, m.out, pool);
    EXPECT_EQ(0, std::memcmp(got.data(), floats.data(), got.size() * sizeof(float)));
    // A base packed for the forward (Q4_0, Q8_0: load_frozen_base packs them) reads the same rows back.
    if (!kernels::can_pack(a.view) || !kernels::can_unpack(type)) continue;
    const kernels::PackedMatrix pa(a.view, pool), pb(b.view, pool);
    const StoredMatrix packed{{pa.view(), pb.view(), c.view}, I, 72};
    std::vector<float> from_packed = start;
    stored_matrix_backward(from_packed.data(), dout.data(), packed, N, pool);
    EXPECT_EQ(0, std::memcmp(got.data(), from_packed.data(), got.size() * sizeof(float)));
  }
}

TEST(TrainQlora, StoredForwardIsTheQuantizedProduct) {
  ThreadPool pool(2);
  const int64_t I = 256, O = 48, N = 5;
  const std::vector<float> w = random_floats(static_cast<size_t>(O * I), 8, 0.05);
  const std::vector<float> x = random_floats(static_cast<size_t>(N * I), 9, 1.0);
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_info(type).name);
    const QuantizedRows q = quantize_rows(w.data(), 16, I, type), r = quantize_rows(w.data() + 16 * I, 32, I, type);
    const StoredMatrix m{{q.view, r.view}, I, O};
    for (bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "packed" : "file layout");
    std::optional<kernels::PackedMatrix> pq, pr;
    StoredMatrix used = m;
    if (packed) {
      if (!kernels::can_pack(q.view)) continue;
      used.parts = {pq.emplace(q.view, pool).view(), pr.emplace(r.view, pool).view()};
    }
    std::vector<float> got(static_cast<size_t>(N * O)), want(got.size());
    stored_matrix_forward(got.data(), x.data(), used, N, pool);
    const std::vector<float> wf = dequantized(m);
    kernels::WeightMatrix f32;
    f32.data = reinterpret_cast<const std::byte*>(wf.data());
    f32.rows = O;
    f32.cols = I;
    f32.row_bytes = static_cast<size_t>(I) * sizeof(float);
    kernels::matmul_reference(f32, x.data(), N, want.data(), O);
    // Activations quantized to 8 bits per block: each term off by at most |w| amax / 254.
    double amax = 0, max_err = 0, bound = 0;
    for (float v : x) amax = std::max(amax, std::abs(static_cast<double>(v)));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) {
        double row_bound = 0;
        for (int64_t i = 0; i < I; ++i)
          row_bound += std::abs(wf[static_cast<size_t>(o * I + i)]) * amax / 254;
        max_err = std::max(max_err, std::abs(static_cast<double>(got[n * O + o]) - want[n * O + o]));
        bound = std::max(bound, row_bound);
      }
    EXPECT_LT(max_err, bound);
    EXPECT_GT(max_err, 0.0);  // the activations really are quantized (the float product would be exact)
    }
  }
}

// The only differences between a Q8_0 base kept as stored (layer matrices, embedding and head) and the
// same base dequantized to float32 are the forward's 8-bit activations (the backward is bit-identical,
// test above) and the NormHead's division after the product instead of before: per block, x is rounded
// to amax / 127 steps, a relative error of up to 1/254 per element, through 2 layers and into every
// adapter's input. Measured here: loss 2.1e-4 relative, gradients 1.2e-2 to 2.4e-2 (max-abs error /
// max-abs of each tensor); the bounds leave a factor of ~2-5.
TEST(TrainQlora, Q8BaseGradientsMatchTheDequantizedBase) {
  const TrainShape s = qlora_shape(PositionEncoding::Rope, 64, 96);
  TrainModel<float> source(s, false);
  randomize(source, 21, 0.1);
  const MemoryCheckpoint c = checkpoint_of(source, DType::Q8_0, DType::Q8_0, /*interleaved=*/true, DType::Q8_0);
  TrainModel<float> stored = load_frozen_base(c.checkpoint);
  TrainModel<float> floats = load_train_model<float>(c.checkpoint, false);
  ASSERT_NE(stored.stored(), nullptr);
  ASSERT_TRUE(stored.stored()->embed && stored.stored()->head);
  if (kernels::avx2_kernels()) {
    // The layer matrices run the packed tiles; the embedding is read by rows, and this head's 300 rows
    // are not whole groups of 8, so both stay in the file layout.
    EXPECT_EQ(stored.stored()->get(1, LoraTarget::DownProj).parts[0].layout, kernels::Layout::Interleaved8);
    EXPECT_EQ(stored.stored()->head->parts[0].layout, kernels::Layout::Rows);
    EXPECT_EQ(stored.stored()->embed->parts[0].layout, kernels::Layout::Rows);
  }
  ASSERT_EQ(floats.stored(), nullptr);
  EXPECT_EQ(stored.weight_bytes(), frozen_base_size(c.checkpoint).bytes);
  EXPECT_LT(stored.weight_bytes(), floats.weight_bytes());
  const LoraSpec spec = LoraSpec::parse(kAllTargets);
  LoraModel<float> qa(stored, spec, 22), fa(floats, spec, 22);
  randomize_adapter(qa, 23);
  randomize_adapter(fa, 23);
  const std::vector<Record> batch = train_fixtures::padded_records(3, 16, s.vocab, 24);
  ThreadPool pool(2);
  TrainContext<float> qctx, fctx;
  qa.set_dropout_pass(1, 0);
  fa.set_dropout_pass(1, 0);
  const double q_loss = lora_pass(qa, qctx, batch, pool), f_loss = lora_pass(fa, fctx, batch, pool);
  EXPECT_NEAR(q_loss, f_loss, 1e-3 * f_loss);
  EXPECT_NE(q_loss, f_loss);  // the stored path really ran
  for (const ParamInfo& p : qa.layout()) {
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < p.numel; ++i) {
      max_err = std::max(max_err, std::abs(static_cast<double>(qa.grad(p)[i]) - fa.grad(p)[i]));
      max_ref = std::max(max_ref, std::abs(static_cast<double>(fa.grad(p)[i])));
    }
    EXPECT_GT(max_ref, 0.0) << p.name;
    EXPECT_LT(max_err / max_ref, 5e-2) << p.name;
  }
}

TEST(TrainQlora, Q4BaseLoraRunLowersTheLoss) {
  const TrainShape s = qlora_shape(PositionEncoding::Alibi, 64, 96);
  TrainModel<float> source(s, false);
  randomize(source, 31, 0.1);
  const MemoryCheckpoint c = checkpoint_of(source, DType::Q4_0, DType::Q4_0, /*interleaved=*/false, DType::Q4_0);
  TrainModel<float> base = load_frozen_base(c.checkpoint);
  ASSERT_NE(base.stored(), nullptr);
  LoraModel<float> lora(base, LoraSpec::parse("r=8,alpha=16,dropout=0,targets=W_pack,o_proj,down_proj"), 32);
  lora.init();
  const std::vector<std::vector<Record>> batches{train_fixtures::padded_records(4, 12, s.vocab, 33)};
  AdamW<float> optimizer(lora.params().size());
  TrainContext<float> ctx;
  ThreadPool pool(2);
  AdamWConfig config;
  config.lr = 1e-2;
  const std::vector<double> losses = train_loop(lora, optimizer, ctx, std::span(batches), 15, config, pool);
  EXPECT_LT(losses.back(), 0.7 * losses.front()) << losses.front() << " -> " << losses.back();
}

TEST(TrainQlora, MixedQuantizedBaseIsBitIdenticalForAnyThreadCount) {
  // Q4_K matrices with Q6_K V rows (a Q4_K_M-like mix): W_pack spans two block types.
  const TrainShape s = qlora_shape(PositionEncoding::Rope, 256, 256);
  TrainModel<float> source(s, false);
  randomize(source, 41, 0.05);
  const MemoryCheckpoint c = checkpoint_of(source, DType::Q4_K, DType::Q6_K, /*interleaved=*/true, DType::Q6_K);
  TrainModel<float> base = load_frozen_base(c.checkpoint);
  const std::vector<Record> batch = train_fixtures::padded_records(2, 12, s.vocab, 42);
  std::vector<std::vector<float>> grads;
  std::vector<double> losses;
  for (int threads : {1, 2}) {
    LoraModel<float> lora(base, LoraSpec::parse(kAllTargets), 43);
    randomize_adapter(lora, 44);
    lora.set_dropout_pass(2, 0);
    TrainContext<float> ctx;
    ThreadPool pool(threads);
    losses.push_back(lora_pass(lora, ctx, batch, pool));
    grads.emplace_back(lora.grads().begin(), lora.grads().end());
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)));
}

TEST(TrainQlora, CheckpointedActivationsGiveBitIdenticalFullGradients) {
  for (PositionEncoding position : {PositionEncoding::Rope, PositionEncoding::Alibi}) {
    const TrainShape s = qlora_shape(position, 32, 48);
    TrainModel<float> model(s);
    randomize(model, 51, 0.1);
    const std::vector<Record> batch = train_fixtures::padded_records(3, 10, s.vocab, 52);
    ThreadPool pool(2);
    std::vector<std::vector<float>> grads;
    std::vector<double> losses;
    for (bool checkpointed : {false, true}) {
      TrainContext<float> ctx;
      ctx.checkpoint_activations = checkpointed;
      model.zero_grads();
      losses.push_back(forward_backward(model, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool));
      grads.emplace_back(model.grads().begin(), model.grads().end());
      if (checkpointed) {
        EXPECT_EQ(ctx.qkv.size(), static_cast<size_t>(3 * 10 * 3 * s.hidden));  // one layer's
      }
    }
    EXPECT_EQ(losses[0], losses[1]);
    EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)));
  }
}

TEST(TrainQlora, CheckpointedActivationsGiveBitIdenticalLoraGradients) {
  const TrainShape s = qlora_shape(PositionEncoding::Rope, 64, 96);
  TrainModel<float> source(s, false);
  randomize(source, 61, 0.1);
  const MemoryCheckpoint c = checkpoint_of(source, DType::Q8_0, DType::Q4_0, false, DType::Q8_0);
  for (bool quantized : {false, true}) {
    SCOPED_TRACE(quantized ? "Q8_0/Q4_0 base" : "float base");
    TrainModel<float> base = quantized ? load_frozen_base(c.checkpoint) : load_train_model<float>(c.checkpoint, false);
    const std::vector<Record> batch = train_fixtures::padded_records(2, 12, s.vocab, 62);
    std::vector<std::vector<float>> grads;
    std::vector<double> losses;
    for (bool checkpointed : {false, true}) {
      LoraModel<float> lora(base, LoraSpec::parse(kAllTargets), 63);
      randomize_adapter(lora, 64);
      lora.set_dropout_pass(1, 1);
      TrainContext<float> ctx;
      ctx.checkpoint_activations = checkpointed;
      ThreadPool pool(2);
      losses.push_back(lora_pass(lora, ctx, batch, pool));
      grads.emplace_back(lora.grads().begin(), lora.grads().end());
    }
    EXPECT_EQ(losses[0], losses[1]);
    EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)));
  }
}

TEST(TrainQlora, MemoryPlanShowsCheckpointingAndTheStoredBase) {
  const TrainShape s = qlora_shape(PositionEncoding::Rope, 64, 96);
  const LoraSpec spec = LoraSpec::parse("r=8,targets=W_pack");
  const MemoryPlan plain = lora_memory_plan(s, spec, 2, 64), checkpointed = lora_memory_plan(s, spec, 2, 64, true);
  // The saving: (layers - 1) layers of everything but the residual stream (hand count of prepare()).
  const uint64_t N = 2 * 64, per_layer_floats = 4 * N * 64 + 2 * N + 3 * N * 64 + 4 * N + 3 * N * 96;
  EXPECT_EQ(plain.activations - checkpointed.activations, (s.layers - 1) * per_layer_floats * sizeof(float));
  EXPECT_NE(checkpointed.describe().find("checkpointed per layer"), std::string::npos);
  TrainModel<float> source(s, false);
  randomize(source, 71, 0.1);
  const MemoryCheckpoint c = checkpoint_of(source, DType::Q4_0, DType::Q8_0, false);
  const FrozenBaseSize size = frozen_base_size(c.checkpoint);
  EXPECT_EQ(size.stored_types, "Q4_0, Q8_0");
  EXPECT_EQ(size.bytes, load_frozen_base(c.checkpoint).weight_bytes());
  const MemoryPlan q = lora_memory_plan(s, spec, 2, 64, true, &size);
  EXPECT_NE(q.describe().find("weights (Q4_0, Q8_0 as stored, the rest float32)"), std::string::npos) << q.describe();
}

}  // namespace baichuan::train
