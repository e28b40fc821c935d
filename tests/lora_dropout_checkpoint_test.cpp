// LoRA dropout under activation checkpointing: the dropped-out inputs are recomputed in the backward
// from the layer's input and the pass's mask, never kept per layer. Four AdamW steps with dropout on
// give bit-identical losses and adapters with and without --checkpoint-activations, the context holds
// one adapter's dropped-out input whatever the layer count, and the memory plan covers what it holds.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "train/lora.h"
#include "train/memory_plan.h"
#include "train/trainer.h"
#include "train_fixtures.h"

namespace baichuan::train {
namespace lora_dropout_checkpoint_test {  // named, not anonymous: the tests compile as a unity build

constexpr const char* kDropoutSpec = "r=3,alpha=6,dropout=0.3,targets=W_pack,o_proj,gate_proj,up_proj,down_proj";

// Four layers, so that a buffer kept per layer would show in the sizes.
TrainShape four_layer_shape(PositionEncoding position) {
  TrainShape s = train_fixtures::small_shape(position, 50, 16, 2, 24);
  s.layers = 4;
  return s;
}

struct DropoutRun {
  std::vector<double> losses;
  std::vector<float> adapters;
  size_t dropout_scratch = 0, kept_floats = 0;
};

// `steps` AdamW steps of two micro-batches each (dropout passes (step, 0) and (step, 1)).
DropoutRun train_with_dropout(PositionEncoding position, bool checkpointed, int64_t steps) {
  const TrainShape s = four_layer_shape(position);
  TrainModel<float> base(s, false);
  randomize(base, 81, 0.1);
  LoraModel<float> lora(base, LoraSpec::parse(kDropoutSpec), 82);
  lora.init();
  std::mt19937_64 rng(83);  // B = 0 after init: give it values so every path carries a gradient
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& x : lora.params()) x += normal(rng);
  AdamW<float> optimizer(lora.params().size());
  TrainContext<float> ctx;
  ctx.checkpoint_activations = checkpointed;
  ThreadPool pool(2);
  std::vector<std::vector<Record>> micro = {train_fixtures::padded_records(2, 10, s.vocab, 84),
                                            train_fixtures::padded_records(2, 10, s.vocab, 85)};
  AdamWConfig config;
  config.lr = 1e-2;
  DropoutRun run;
  for (int64_t step = 1; step <= steps; ++step)
    run.losses.push_back(train_step(lora, optimizer, ctx, std::span<const std::vector<Record>>(micro), config, pool));
  run.adapters.assign(lora.params().begin(), lora.params().end());
  run.dropout_scratch = ctx.lora_input.size();
  for (const auto* v : {&ctx.x, &ctx.ln1, &ctx.rstd1, &ctx.qkv, &ctx.lse, &ctx.att, &ctx.x_mid, &ctx.ln2, &ctx.rstd2,
                        &ctx.gate, &ctx.up, &ctx.act, &ctx.lnf, &ctx.rstdf, &ctx.head, &ctx.head_norm, &ctx.dhead,
                        &ctx.logits, &ctx.head_in, &ctx.dhead_in, &ctx.tmp, &ctx.dx, &ctx.dln, &ctx.datt, &ctx.dqkv,
                        &ctx.dact, &ctx.dgate, &ctx.dup, &ctx.dlnf, &ctx.lora_input, &ctx.lora_mid, &ctx.lora_scratch,
                        &ctx.lora_dmid, &ctx.lora_dinput})
    run.kept_floats += v->size();
  return run;
}

void expect_checkpointing_changes_nothing(PositionEncoding position) {
  const DropoutRun plain = train_with_dropout(position, false, 4), checkpointed = train_with_dropout(position, true, 4);
  ASSERT_EQ(plain.losses.size(), 4u);
  EXPECT_EQ(plain.losses, checkpointed.losses);
  EXPECT_NE(plain.losses.front(), plain.losses.back());  // the steps did train
  ASSERT_EQ(plain.adapters.size(), checkpointed.adapters.size());
  EXPECT_EQ(0, std::memcmp(plain.adapters.data(), checkpointed.adapters.data(), plain.adapters.size() * sizeof(float)));
  // One adapter's dropped-out input (N rows of the widest input, down_proj's), not one per layer.
  const TrainShape s = four_layer_shape(position);
  EXPECT_EQ(checkpointed.dropout_scratch, static_cast<size_t>(2 * 10 * s.ffn));
  EXPECT_EQ(plain.dropout_scratch, checkpointed.dropout_scratch);
}

TEST(LoraDropoutCheckpoint, RopeLossesAndAdaptersAreBitIdentical) { expect_checkpointing_changes_nothing(PositionEncoding::Rope); }
TEST(LoraDropoutCheckpoint, AlibiLossesAndAdaptersAreBitIdentical) {
  expect_checkpointing_changes_nothing(PositionEncoding::Alibi);
}

// The plan against the context's buffers after the steps, with and without checkpointing.
TEST(LoraDropoutCheckpoint, MemoryPlanCoversTheCheckpointedContext) {
  const TrainShape s = four_layer_shape(PositionEncoding::Rope);
  for (bool checkpointed : {false, true}) {
    SCOPED_TRACE(checkpointed ? "checkpointed" : "plain");
    const DropoutRun run = train_with_dropout(PositionEncoding::Rope, checkpointed, 1);
    const MemoryPlan plan = lora_memory_plan(s, LoraSpec::parse(kDropoutSpec), 2, 10, checkpointed);
    const uint64_t context = plan.activations + plan.head, held = run.kept_floats * sizeof(float);
    EXPECT_GE(context, held);
    EXPECT_LE(context, held * 11 / 10 + 4096);
  }
}

}  // namespace lora_dropout_checkpoint_test
}  // namespace baichuan::train
