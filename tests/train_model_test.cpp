// The training step on small random models: the whole model's gradient against finite differences
// in float64 (both families, padding, z-loss), bit-identical results for any thread count, gradient
// accumulation, overfitting a few records, and the errors a user can meet.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <random>

#include "core/error.h"
#include "error_matchers.h"
#include "train/trainer.h"
#include "train_fixtures.h"

namespace baichuan::train {
namespace train_model_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;
using train_fixtures::padded_records;
using train_fixtures::small_shape;

template <typename T>
double loss_and_grads(TrainModel<T>& model, TrainContext<T>& ctx, const std::vector<Record>& batch, ThreadPool& pool) {
  model.zero_grads();
  return forward_backward(model, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
}

void check_model_gradient(PositionEncoding position, int64_t hidden, int64_t heads, double z_loss_weight) {
  TrainShape s = small_shape(position, 23, hidden, heads, 10);
  s.z_loss_weight = z_loss_weight;
  TrainModel<double> model(s);
  randomize(model, 11, 0.4);
  ThreadPool pool(1);  // hundreds of tiny passes (threads are the next test's subject)
  TrainContext<double> ctx;
  const std::vector<Record> batch = padded_records(3, 7, s.vocab, 12);
  loss_and_grads(model, ctx, batch, pool);
  const std::vector<double> analytic(model.grads().begin(), model.grads().end());
  std::mt19937_64 rng(13);
  for (const ParamInfo& p : model.layout()) {
    // A few elements of each tensor; for the vocabulary tensors, elements of rows the batch uses.
    double max_err = 0, max_ref = 1e-9;
    for (int k = 0; k < 6; ++k) {
      size_t i = std::uniform_int_distribution<size_t>(0, p.numel - 1)(rng);
      if (p.shape[0] == s.vocab) i = static_cast<size_t>(batch[0].input_ids[static_cast<size_t>(k)]) * s.hidden + k % s.hidden;
      double& x = model.params()[p.offset + i];
      const double keep = x, h = 1e-6;
      x = keep + h;
      const double up = loss_and_grads(model, ctx, batch, pool);
      x = keep - h;
      const double down = loss_and_grads(model, ctx, batch, pool);
      x = keep;
      const double numeric = (up - down) / (2 * h);
      max_err = std::max(max_err, std::abs(numeric - analytic[p.offset + i]));
      max_ref = std::max(max_ref, std::abs(numeric));
    }
    EXPECT_LT(max_err / max_ref, 1e-6) << p.name;
  }
}

TEST(TrainModel, RopeModelGradientMatchesFiniteDifferences) { check_model_gradient(PositionEncoding::Rope, 8, 2, 0.0); }

TEST(TrainModel, AlibiModelGradientMatchesFiniteDifferences) {
  check_model_gradient(PositionEncoding::Alibi, 9, 3, 0.0);
}

// With z-loss the padded rows' logits count, so the masked-query fallback is differentiated too.
TEST(TrainModel, ZLossModelGradientMatchesFiniteDifferences) {
  check_model_gradient(PositionEncoding::Rope, 8, 2, 0.05);
  check_model_gradient(PositionEncoding::Alibi, 9, 3, 0.05);
}

TEST(TrainModel, LayoutUsesTheOfficialNamesInOneFlatBuffer) {
  TrainModel<float> model(small_shape(PositionEncoding::Rope, 23, 8, 2, 10));
  const auto& layout = model.layout();
  EXPECT_EQ(layout.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(layout[1].name, "model.layers.0.self_attn.W_pack.weight");
  EXPECT_EQ(layout[1].shape, (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(layout.back().name, "lm_head.weight");
  EXPECT_EQ(layout[layout.size() - 2].name, "model.norm.weight");
  for (size_t i = 1; i < layout.size(); ++i) EXPECT_EQ(layout[i].offset, layout[i - 1].offset + layout[i - 1].numel);
  EXPECT_EQ(layout.back().offset + layout.back().numel, model.params().size());
  EXPECT_EQ(model.grads().size(), model.params().size());
}

TEST(TrainModel, ResultsAreBitIdenticalForAnyThreadCount) {
  for (auto position : {PositionEncoding::Rope, PositionEncoding::Alibi}) {
    TrainShape s = small_shape(position, 301, 40, 5, 56);
    s.z_loss_weight = 0.01;
    const std::vector<Record> batch = padded_records(3, 26, s.vocab, 21);
    std::vector<float> first_grads;
    double first_loss = 0;
    for (int threads : {1, 2, 3}) {
      TrainModel<float> model(s);
      randomize(model, 22, 0.1);
      TrainContext<float> ctx;
      ThreadPool pool(threads);
      const double loss = loss_and_grads(model, ctx, batch, pool);
      if (threads == 1) {
        first_loss = loss;
        first_grads.assign(model.grads().begin(), model.grads().end());
        continue;
      }
      EXPECT_EQ(loss, first_loss) << threads << " threads";
      EXPECT_EQ(0, std::memcmp(first_grads.data(), model.grads().data(), first_grads.size() * sizeof(float)))
          << threads << " threads";
    }
  }
}

// Record 0 of padded_records has no padding; appended pad positions (id 0, label -100) are not
// computed, unless z-loss averages over them as the official code does.
TEST(TrainModel, TrailingPaddingIsCutUnlessZLossReadsIt) {
  for (double z_loss : {0.0, 0.01}) {
    TrainShape s = small_shape(PositionEncoding::Alibi, 50, 16, 4, 24);
    s.z_loss_weight = z_loss;
    std::vector<Record> batch = padded_records(3, 9, s.vocab, 41);
    for (Record& r : batch) {
      r.input_ids.resize(14, 0);
      r.labels.resize(14, -100);
    }
    TrainModel<float> model(s);
    randomize(model, 42, 0.2);
    TrainContext<float> ctx;
    ThreadPool pool(2);
    loss_and_grads(model, ctx, batch, pool);
    EXPECT_EQ(ctx.seq_len, z_loss == 0 ? 9 : 14) << "z_loss_weight " << z_loss;
  }
}

// Held-out evaluation: the loss of the full pass, bit for bit, and no gradient written.
TEST(TrainModel, ForwardLossIsThePassLossWithoutGradients) {
  for (double z_loss : {0.0, 0.01}) {
    TrainShape s = small_shape(PositionEncoding::Rope, 50, 16, 4, 24);
    s.z_loss_weight = z_loss;
    const std::vector<Record> batch = padded_records(3, 11, s.vocab, 51);
    TrainModel<float> model(s);
    randomize(model, 52, 0.2);
    TrainContext<float> ctx;
    ThreadPool pool(2);
    model.zero_grads();
    const double loss = forward_loss(model, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool);
    EXPECT_TRUE(std::all_of(model.grads().begin(), model.grads().end(), [](float g) { return g == 0; }));
    EXPECT_EQ(loss, loss_and_grads(model, ctx, batch, pool)) << "z_loss_weight " << z_loss;
    EXPECT_EQ(loss, forward_loss(model, ctx, std::span<const Record>(batch), count_loss_tokens(batch), pool));
  }
}

TEST(TrainModel, MicroBatchesAddUpToTheWholeBatch) {
  const TrainShape s = small_shape(PositionEncoding::Alibi, 50, 16, 4, 24);
  const std::vector<Record> records = padded_records(2, 9, s.vocab, 31);
  ThreadPool pool(2);
  TrainModel<float> whole(s), split(s);
  randomize(whole, 32, 0.2);
  randomize(split, 32, 0.2);
  AdamW<float> opt_whole(whole.params().size()), opt_split(split.params().size());
  TrainContext<float> ctx;
  const AdamWConfig config;
  const std::vector<std::vector<Record>> one{records}, two{{records[0]}, {records[1]}};
  const double loss_whole = train_step(whole, opt_whole, ctx, one, config, pool);
  const double loss_split = train_step(split, opt_split, ctx, two, config, pool);
  EXPECT_NEAR(loss_split, loss_whole, 1e-6 * loss_whole);
  float max_err = 0, max_ref = 0;
  for (size_t i = 0; i < whole.grads().size(); ++i) {
    max_err = std::max(max_err, std::abs(whole.grads()[i] - split.grads()[i]));
    max_ref = std::max(max_ref, std::abs(whole.grads()[i]));
  }
  EXPECT_LT(max_err / max_ref, 1e-5);
}

TEST(TrainModel, OverfitsAFewRecords) {
  const TrainShape s = small_shape(PositionEncoding::Rope, 40, 32, 4, 64);
  TrainModel<float> model(s);
  randomize(model, 41, 0.05);
  const std::vector<std::vector<Record>> batches{padded_records(3, 16, s.vocab, 42)};
  AdamW<float> optimizer(model.params().size());
  TrainContext<float> ctx;
  ThreadPool pool(1);
  AdamWConfig config;
  config.lr = 1e-2;
  config.beta2 = 0.98;
  config.weight_decay = 0;
  const std::vector<double> losses = train_loop(model, optimizer, ctx, batches, 60, config, pool);
  EXPECT_GT(losses.front(), 3.0);  // ln 40 = 3.7 for a uniform guess
  EXPECT_LT(losses.back(), 0.05);
  std::cout << "loss every 10 steps:";
  for (size_t i = 0; i < losses.size(); i += 10) std::cout << " " << losses[i];
  std::cout << " ... " << losses.back() << "\n";
  EXPECT_EQ(optimizer.steps(), 60);
}

TEST(TrainModel, NonFiniteValuesStopTheStepNamingTheTensor) {
  const TrainShape s = small_shape(PositionEncoding::Rope, 23, 8, 2, 10);
  TrainModel<float> model(s);
  randomize(model, 51, 0.1);
  const ParamInfo& up = model.info("model.layers.1.mlp.up_proj.weight");
  model.param(up)[5] = NAN;
  const std::vector<float> before(model.params().begin(), model.params().end());
  AdamW<float> optimizer(model.params().size());
  TrainContext<float> ctx;
  ThreadPool pool(1);
  const std::vector<std::vector<Record>> batch{padded_records(2, 6, s.vocab, 52)};
  EXPECT_THAT([&] { train_step(model, optimizer, ctx, batch, AdamWConfig{}, pool); },
              throws_error("step 1", "model.layers.1.mlp.up_proj.weight[5]"));
  EXPECT_EQ(0, std::memcmp(before.data(), model.params().data(), before.size() * sizeof(float)));
}

TEST(TrainModel, RejectsBatchesItCannotTrainOn) {
  const TrainShape s = small_shape(PositionEncoding::Alibi, 23, 9, 3, 10);
  TrainModel<float> model(s);
  TrainContext<float> ctx;
  ThreadPool pool(1);
  auto message = [&](std::vector<Record> batch) {
    return baichuan::testing::error_message_of([&] { loss_and_grads(model, ctx, batch, pool); });
  };
  EXPECT_NE(message({{{5, 6, 7}, {-100, 6, 7}}, {{5, 6}, {-100, 6}}}).find("record 1 has 2 input_ids"), std::string::npos);
  EXPECT_NE(message({{{5, 6, 23}, {-100, 6, 7}}}).find("input_ids[2] = 23 is outside"), std::string::npos);
  EXPECT_NE(message({{{5, 6, 7}, {-100, -3, 7}}}).find("labels[1] = -3"), std::string::npos);
  EXPECT_NE(message({{{5, 6, 7}, {5, -100, -100}}}).find("no label to learn"), std::string::npos);
}

}  // namespace
}  // namespace baichuan::train
