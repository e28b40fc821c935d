// LoRA training on small random models: the adapters' gradients against finite differences in
// float64 (every target, RoPE and ALiBi), the frozen base, PEFT's init, the merged model against the
// unmerged pass, bit-identical results for any thread count (dropout on), overfitting 8 records, and
// the --lora spec parser's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <random>

#include "core/error.h"
#include "error_matchers.h"
#include "model/lora_apply.h"
#include "train/lora.h"
#include "train/lora_export.h"
#include "train/lora_merge.h"
#include "train/memory_plan.h"
#include "train/trainer.h"
#include "train_fixtures.h"

namespace baichuan::train {
namespace train_lora_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;

// Records whose padding grows by one token per record.
std::vector<Record> lora_records(int64_t count, int64_t len, int64_t vocab, uint64_t seed) {
  return train_fixtures::padded_records(count, len, vocab, seed, 1);
}

LoraSpec all_targets(int64_t rank, double alpha, double dropout) {
  return LoraSpec::parse(cat("r=", rank, ",alpha=", alpha, ",dropout=", dropout,
                             ",targets=W_pack,o_proj,gate_proj,up_proj,down_proj"));
}

// B = 0 makes A's gradient 0: give both random values for the checks.
template <typename T>
void randomize_adapter(LoraModel<T>& lora, uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  for (T& x : lora.params()) x = static_cast<T>(normal(rng));
}

template <typename T>
double lora_loss_and_grads(LoraModel<T>& lora, TrainContext<T>& ctx, const std::vector<Record>& batch,
                           ThreadPool& pool) {
  lora.zero_grads();
  return forward_backward(lora, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
}

// Every element of every A and B (the model is tiny) against central differences, with a fixed
// dropout mask (pass 3, micro-batch 1) so the loss is a smooth function of the adapters.
void check_lora_gradient(PositionEncoding position, int64_t hidden, int64_t heads) {
  const TrainShape s = train_fixtures::small_shape(position, 19, hidden, heads, 10);
  TrainModel<double> base(s, /*with_gradients=*/false);
  randomize(base, 61, 0.4);
  LoraModel<double> lora(base, all_targets(2, 3, 0.25), 62);
  randomize_adapter(lora, 63, 0.3);
  ThreadPool pool(1);
  TrainContext<double> ctx;
  const std::vector<Record> batch = lora_records(2, 6, s.vocab, 64);
  lora.set_dropout_pass(3, 1);
  lora_loss_and_grads(lora, ctx, batch, pool);
  const std::vector<double> analytic(lora.grads().begin(), lora.grads().end());
  EXPECT_TRUE(base.grads().empty());  // the frozen base has no gradient buffer at all
  for (const ParamInfo& p : lora.layout()) {
    double max_err = 0, max_ref = 1e-9;
    for (size_t i = 0; i < p.numel; ++i) {
      double& x = lora.params()[p.offset + i];
      const double keep = x, h = 1e-6;
      x = keep + h;
      const double up = lora_loss_and_grads(lora, ctx, batch, pool);
      x = keep - h;
      const double down = lora_loss_and_grads(lora, ctx, batch, pool);
      x = keep;
      const double numeric = (up - down) / (2 * h);
      max_err = std::max(max_err, std::abs(numeric - analytic[p.offset + i]));
      max_ref = std::max(max_ref, std::abs(numeric));
    }
    EXPECT_GT(max_ref, 1e-6) << p.name << ": a gradient that is all zero checks nothing";
    EXPECT_LT(max_err / max_ref, 1e-6) << p.name;
  }
}

TEST(TrainLora, RopeAdapterGradientsMatchFiniteDifferences) { check_lora_gradient(PositionEncoding::Rope, 8, 2); }

TEST(TrainLora, AlibiAdapterGradientsMatchFiniteDifferences) { check_lora_gradient(PositionEncoding::Alibi, 9, 3); }

// Held-out evaluation of an adapter: the loss of the LoRA pass, bit for bit, and no gradient written.
TEST(TrainLora, ForwardLossIsThePassLossWithoutGradients) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Alibi, 29, 12, 3, 20);
  TrainModel<float> base(s);
  randomize(base, 91, 0.2);
  LoraModel<float> lora(base, LoraSpec::parse("r=2,alpha=4,targets=W_pack,o_proj,up_proj"), 92);
  for (float& p : lora.params()) p += 0.01f;  // B starts at zero: make the adapters count
  const std::vector<Record> batch = train_fixtures::padded_records(2, 9, s.vocab, 93);
  TrainContext<float> ctx;
  ThreadPool pool(2);
  const LossNorm norm = count_loss_tokens(batch);
  const double loss = forward_loss(lora, ctx, std::span<const Record>(batch), norm, pool);
  EXPECT_TRUE(std::all_of(lora.grads().begin(), lora.grads().end(), [](float g) { return g == 0; }));
  EXPECT_EQ(loss, forward_backward(lora, ctx, std::span<const Record>(batch), norm, pool));
  EXPECT_TRUE(std::any_of(lora.grads().begin(), lora.grads().end(), [](float g) { return g != 0; }));
}

TEST(TrainLora, LayoutNamesEveryAdapterAsPeftDoes) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Rope, 19, 8, 2, 10);
  TrainModel<float> base(s, false);
  LoraModel<float> lora(base, LoraSpec::parse("r=3,targets=W_pack,down_proj"), 1);
  const auto& layout = lora.layout();
  ASSERT_EQ(layout.size(), 8u);  // 2 layers x 2 targets x (A, B)
  EXPECT_EQ(layout[0].name, "base_model.model.model.layers.0.self_attn.W_pack.lora_A.weight");
  EXPECT_EQ(layout[0].shape, (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(layout[1].name, "base_model.model.model.layers.0.self_attn.W_pack.lora_B.weight");
  EXPECT_EQ(layout[1].shape, (std::vector<int64_t>{24, 3}));
  EXPECT_EQ(layout[2].name, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
  EXPECT_EQ(layout[2].shape, (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(layout[3].shape, (std::vector<int64_t>{8, 3}));
  EXPECT_EQ(layout[7].name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  for (size_t i = 1; i < layout.size(); ++i) EXPECT_EQ(layout[i].offset, layout[i - 1].offset + layout[i - 1].numel);
  EXPECT_EQ(lora.params().size(), 2u * (3 * 8 + 24 * 3 + 3 * 10 + 8 * 3));
  EXPECT_EQ(lora.grads().size(), lora.params().size());
}

TEST(TrainLora, InitIsPeftsAndLeavesTheModelUnchanged) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Alibi, 29, 12, 3, 20);
  TrainModel<float> base(s);
  randomize(base, 71, 0.2);
  LoraModel<float> lora(base, all_targets(4, 8, 0), 72);
  lora.init();
  for (const LoraSlot& slot : lora.slots()) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(slot.in));
    float max_abs = 0;
    for (int64_t i = 0; i < 4 * slot.in; ++i) max_abs = std::max(max_abs, std::abs(lora.params()[slot.a + i]));
    EXPECT_LE(max_abs, bound);
    EXPECT_GT(max_abs, 0.5f * bound);  // uniform over the whole interval, not a narrower one
    for (int64_t i = 0; i < slot.out * 4; ++i) EXPECT_EQ(lora.params()[slot.b + i], 0.0f);
  }
  LoraModel<float> again(base, all_targets(4, 8, 0), 72);
  again.init();
  EXPECT_EQ(0, std::memcmp(lora.params().data(), again.params().data(), lora.params().size() * sizeof(float)));
  // B = 0: the adapted model computes exactly the base model's loss.
  ThreadPool pool(1);
  TrainContext<float> ctx;
  const std::vector<Record> batch = lora_records(2, 8, s.vocab, 73);
  const double with_adapter = lora_loss_and_grads(lora, ctx, batch, pool);
  base.zero_grads();
  const double without = forward_backward(base, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
  EXPECT_EQ(with_adapter, without);
}

TEST(TrainLora, MergedModelGivesTheUnmergedLoss) {
  for (auto position : {PositionEncoding::Rope, PositionEncoding::Alibi}) {
    const TrainShape s = train_fixtures::small_shape(position, 41, 16, 4, 24);
    TrainModel<float> base(s, false);
    randomize(base, 81, 0.2);
    LoraModel<float> lora(base, all_targets(4, 8, 0.1), 82);
    lora.init();
    ThreadPool pool(2);
    TrainContext<float> ctx;
    AdamW<float> optimizer(lora.params().size());
    AdamWConfig config;
    config.lr = 1e-2;
    const std::vector<std::vector<Record>> batches{lora_records(4, 10, s.vocab, 83)};
    train_loop(lora, optimizer, ctx, batches, 5, config, pool);  // B no longer 0
    const double unmerged = lora_loss_and_grads(lora, ctx, batches[0], pool);  // dropout is off outside a step
    TrainModel<float> merged(s);
    std::copy(base.params().begin(), base.params().end(), merged.params().begin());
    // merge-lora's path: the adapter as exported, merged as LoraDeltas add it.
    const LoraDeltas deltas({ScaledLoraAdapter{to_lora_adapter(lora, ""), 1.0f}}, train_fixtures::config_of_shape(s),
                            false);
    merge_lora_deltas(merged, deltas, pool);
    const double merged_loss =
        forward_backward(merged, ctx, std::span<const Record>(batches[0]), count_loss_tokens(batches[0]), pool);
    EXPECT_NEAR(merged_loss, unmerged, 1e-5 * std::abs(unmerged));
    // And the adapter did change the model.
    TrainModel<float> plain(s);
    std::copy(base.params().begin(), base.params().end(), plain.params().begin());
    const double base_loss =
        forward_backward(plain, ctx, std::span<const Record>(batches[0]), count_loss_tokens(batches[0]), pool);
    EXPECT_GT(std::abs(base_loss - unmerged), 1e-3);
  }
}

TEST(TrainLora, ResultsAreBitIdenticalForAnyThreadCount) {
  for (auto position : {PositionEncoding::Rope, PositionEncoding::Alibi}) {
    const TrainShape s = train_fixtures::small_shape(position, 301, 40, 5, 56);
    const std::vector<std::vector<Record>> batches{lora_records(3, 26, s.vocab, 91)};
    std::vector<double> first_losses;
    std::vector<float> first_params;
    for (int threads : {1, 2}) {
      TrainModel<float> base(s, false);
      randomize(base, 92, 0.1);
      LoraModel<float> lora(base, all_targets(3, 6, 0.2), 93);
      lora.init();
      AdamW<float> optimizer(lora.params().size());
      TrainContext<float> ctx;
      ThreadPool pool(threads);
      AdamWConfig config;
      config.lr = 1e-2;
      const std::vector<double> losses = train_loop(lora, optimizer, ctx, batches, 3, config, pool);
      if (threads == 1) {
        first_losses = losses;
        first_params.assign(lora.params().begin(), lora.params().end());
        continue;
      }
      EXPECT_EQ(losses, first_losses);
      EXPECT_EQ(0, std::memcmp(first_params.data(), lora.params().data(), first_params.size() * sizeof(float)));
    }
  }
}

TEST(TrainLora, DropoutMasksDependOnThePassOnly) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Rope, 19, 8, 2, 10);
  TrainModel<float> base(s, false);
  LoraModel<float> lora(base, LoraSpec::parse("r=2,dropout=0.3"), 5);
  const LoraSlot& slot = lora.slots()[0];
  auto mask = [&](int64_t step, int64_t micro) {
    lora.set_dropout_pass(step, micro);
    std::vector<bool> keeps;
    for (uint64_t i = 0; i < 2000; ++i) keeps.push_back(lora.dropout_keeps(slot, i));
    return keeps;
  };
  const std::vector<bool> a = mask(4, 0);
  EXPECT_EQ(a, mask(4, 0));
  EXPECT_NE(a, mask(4, 1));
  EXPECT_NE(a, mask(5, 0));
  const auto dropped = static_cast<double>(std::count(a.begin(), a.end(), false));
  EXPECT_NEAR(dropped / 2000, 0.3, 0.05);
  lora.disable_dropout();
  EXPECT_FALSE(lora.dropout_active());
}

TEST(TrainLora, OverfitsEightRecords) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Rope, 40, 32, 4, 64);
  TrainModel<float> base(s, false);
  randomize(base, 101, 0.05);
  LoraModel<float> lora(base, all_targets(8, 16, 0), 102);
  lora.init();
  const std::vector<std::vector<Record>> batches{lora_records(8, 12, s.vocab, 103)};
  AdamW<float> optimizer(lora.params().size());
  TrainContext<float> ctx;
  ThreadPool pool(1);
  AdamWConfig config;
  config.lr = 1e-2;
  config.weight_decay = 0;
  const std::vector<double> losses = train_loop(lora, optimizer, ctx, batches, 80, config, pool);
  std::cout << "LoRA loss every 10 steps:";
  for (size_t i = 0; i < losses.size(); i += 10) std::cout << " " << losses[i];
  std::cout << " ... " << losses.back() << "\n";
  EXPECT_GT(losses.front(), 3.0);  // ln 40 = 3.7 for a uniform guess
  EXPECT_LT(losses.back(), 0.1 * losses.front());
}

TEST(TrainLora, MemoryPlanCoversWhatTheContextAllocates) {
  const TrainShape s = train_fixtures::small_shape(PositionEncoding::Alibi, 300, 16, 2, 40);
  TrainModel<float> base(s, false);
  randomize(base, 111, 0.02);
  const LoraSpec spec = LoraSpec::parse("r=3,dropout=0.1,targets=W_pack,gate_proj,down_proj");
  LoraModel<float> lora(base, spec, 112);
  lora.init();
  TrainContext<float> ctx;
  ThreadPool pool(1);
  const std::vector<Record> batch = lora_records(3, 12, s.vocab, 113);
  lora.set_dropout_pass(1, 0);
  forward_backward(lora, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
  uint64_t floats = 0;
  for (const auto* v : {&ctx.x, &ctx.ln1, &ctx.rstd1, &ctx.qkv, &ctx.lse, &ctx.att, &ctx.x_mid, &ctx.ln2, &ctx.rstd2,
                        &ctx.gate, &ctx.up, &ctx.act, &ctx.lnf, &ctx.rstdf, &ctx.head, &ctx.head_norm, &ctx.dhead,
                        &ctx.logits, &ctx.head_in, &ctx.dhead_in, &ctx.tmp, &ctx.dx, &ctx.dln, &ctx.datt, &ctx.dqkv,
                        &ctx.dact, &ctx.dgate, &ctx.dup, &ctx.dlnf, &ctx.lora_input, &ctx.lora_mid, &ctx.lora_scratch,
                        &ctx.lora_dmid, &ctx.lora_dinput})
    floats += v->size();
  EXPECT_TRUE(ctx.dhead.empty());  // the frozen NormHead needs no gradient
  const MemoryPlan plan = lora_memory_plan(s, spec, 3, 12);
  const uint64_t context = plan.activations + plan.head;
  EXPECT_GE(context, floats * sizeof(float));
  EXPECT_LE(context, floats * sizeof(float) * 11 / 10 + 4096);
  EXPECT_EQ(plan.trainable_parameters, lora.params().size());
  EXPECT_EQ(plan.weights, (base.params().size() + lora.params().size()) * sizeof(float));
  EXPECT_EQ(plan.gradients, lora.params().size() * sizeof(float));
  EXPECT_EQ(plan.optimizer, 2 * plan.gradients);
}

TEST(TrainLora, SpecParsesFineTunePyDefaultsAndEveryKey) {
  const LoraSpec d = LoraSpec::parse("");
  EXPECT_EQ(d.rank, 1);
  EXPECT_EQ(d.alpha, 32);
  EXPECT_EQ(d.dropout, 0.1);
  EXPECT_EQ(d.targets, std::vector<LoraTarget>{LoraTarget::WPack});
  EXPECT_EQ(d.scale(), 32);
  const LoraSpec s = LoraSpec::parse("r=8,alpha=16,dropout=0.05,targets=W_pack,o_proj,down_proj,rslora=1");
  EXPECT_EQ(s.rank, 8);
  EXPECT_EQ(s.alpha, 16);
  EXPECT_EQ(s.dropout, 0.05);
  EXPECT_TRUE(s.rslora);
  EXPECT_EQ(s.targets, (std::vector<LoraTarget>{LoraTarget::WPack, LoraTarget::OProj, LoraTarget::DownProj}));
  EXPECT_DOUBLE_EQ(s.scale(), 16 / std::sqrt(8.0));
  EXPECT_EQ(LoraSpec::parse("targets=up_proj,r=4").targets, std::vector<LoraTarget>{LoraTarget::UpProj});
  const LoraSpec round = LoraSpec::from_json(s.to_json(), "test");
  EXPECT_EQ(round.to_json(), s.to_json());
}

TEST(TrainLora, BadSpecsNameTheKeyOrValue) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"r=0", "r=0"},
      {"r=2.5", "r=2.5"},
      {"r=x", "r=x"},
      {"alpha=-1", "alpha=-1"},
      {"alpha=nan", "alpha=nan"},
      {"dropout=1", "dropout=1"},
      {"rank=4", "unknown key 'rank'"},
      {"targets=q_proj", "unknown target 'q_proj'"},
      {"targets=W_pack,W_pack", "'W_pack' is given twice"},
      {"targets=", "targets= needs"},
      {"rslora=yes", "rslora=yes"},
      {"8", "'8' is not key=value"},
  };
  for (const auto& c : cases) {  // not a structured binding: clang 14 cannot capture one in a lambda
    const std::string spec = c.first;
    EXPECT_THAT([&] { LoraSpec::parse(spec); }, throws_error(c.second)) << spec;
  }
}

}  // namespace train_lora_test
}  // namespace baichuan::train
