// The pieces of the training loop: learning-rate schedules against their formulas, clipping against
// a hand computation, the memory plan against what TrainContext really allocates, the data order.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <set>

#include "core/error.h"
#include "train/data_order.h"
#include "train/memory_plan.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace baichuan {
namespace train_loop_test {  // named, not anonymous: the tests compile as a unity build

using namespace train;

TEST(TrainSchedule, ValuesAtChosenStepsMatchTheFormulas) {
  LrSchedule s{ScheduleKind::Cosine, 1e-3, 1e-4, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(1), 1e-4);    // warm-up: lr * 1 / 10
  EXPECT_DOUBLE_EQ(s.at(5), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);   // end of warm-up: the peak
  EXPECT_DOUBLE_EQ(s.at(60), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.5)));
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);  // the floor at the last step
  s.kind = ScheduleKind::Linear;
  EXPECT_DOUBLE_EQ(s.at(35), 1e-4 + 0.9e-3 * (1 - 0.25));
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
  s.kind = ScheduleKind::Constant;
  EXPECT_DOUBLE_EQ(s.at(3), 3e-4);
  EXPECT_DOUBLE_EQ(s.at(100), 1e-3);
  LrSchedule no_warmup{ScheduleKind::Linear, 2e-3, 0, 0, 4};
  EXPECT_DOUBLE_EQ(no_warmup.at(1), 2e-3 * 0.75);
  EXPECT_DOUBLE_EQ(no_warmup.at(4), 0);
}

TEST(TrainSchedule, RefusesNanAndNegativeRates) {
  for (double lr : {std::nan(""), -1e-3, 0.0, HUGE_VAL}) {
    LrSchedule s{ScheduleKind::Cosine, lr, 0, 0, 10};
    EXPECT_THROW(s.validate(), baichuan::Error) << lr;
  }
  LrSchedule floor_above{ScheduleKind::Cosine, 1e-3, 1e-2, 0, 10};
  EXPECT_THROW(floor_above.validate(), baichuan::Error);
}

TEST(TrainClip, GlobalNormAndScaleMatchAHandComputation) {
  TrainShape shape;
  shape.vocab = 6, shape.hidden = 4, shape.ffn = 6, shape.heads = 2, shape.layers = 1;
  TrainModel<float> model(shape);
  double sum = 0;
  for (size_t i = 0; i < model.grads().size(); ++i) {
    model.grads()[i] = static_cast<float>((static_cast<double>(i % 7) - 3) * 0.25);
    sum += static_cast<double>(model.grads()[i]) * model.grads()[i];
  }
  const std::vector<float> before(model.grads().begin(), model.grads().end());
  const double norm = std::sqrt(sum);
  EXPECT_NEAR(clip_grad_norm(model, 0.0), norm, 1e-12 * norm);  // 0: measure only
  EXPECT_EQ(std::vector<float>(model.grads().begin(), model.grads().end()), before);
  EXPECT_NEAR(clip_grad_norm(model, 2 * norm), norm, 1e-12 * norm);  // below the limit: untouched
  EXPECT_EQ(std::vector<float>(model.grads().begin(), model.grads().end()), before);
  clip_grad_norm(model, 1.0);
  const auto coef = static_cast<float>(1.0 / (norm + 1e-6));  // torch: max_norm / (norm + 1e-6)
  for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(model.grads()[i], before[i] * coef) << i;
  EXPECT_NEAR(clip_grad_norm(model, 0.0), 1.0, 1e-5);
}

TEST(TrainMemoryPlan, CoversWhatTheContextAllocates) {
  TrainShape shape;
  shape.vocab = 300, shape.hidden = 16, shape.ffn = 40, shape.heads = 2, shape.layers = 2;
  TrainModel<float> model(shape);
  randomize(model, 7, 0.02);
  TrainContext<float> ctx;
  ThreadPool pool(1);
  std::vector<Record> batch(3);
  for (auto& r : batch)
    for (int t = 0; t < 12; ++t) {
      r.input_ids.push_back(1 + (t * 7) % 290);
      r.labels.push_back(t % 3 ? 1 + (t * 5) % 290 : -100);
    }
  forward_backward(model, ctx, batch, count_loss_tokens(batch), pool);
  uint64_t floats = 0;
  for (const auto* v : {&ctx.x, &ctx.ln1, &ctx.rstd1, &ctx.qkv, &ctx.lse, &ctx.att, &ctx.x_mid, &ctx.ln2, &ctx.rstd2,
                        &ctx.gate, &ctx.up, &ctx.act, &ctx.lnf, &ctx.rstdf, &ctx.head, &ctx.head_norm, &ctx.dhead,
                        &ctx.logits, &ctx.head_in, &ctx.dhead_in, &ctx.tmp, &ctx.dx, &ctx.dln, &ctx.datt, &ctx.dqkv,
                        &ctx.dact, &ctx.dgate, &ctx.dup, &ctx.dlnf})
    floats += v->size();
  const MemoryPlan plan = full_finetune_memory_plan(shape, 3, 12);
  const uint64_t context = plan.activations + plan.head;
  EXPECT_GE(context, floats * sizeof(float));
  EXPECT_LE(context, floats * sizeof(float) * 11 / 10 + 4096);  // and not much more
  EXPECT_EQ(plan.weights, model.params().size() * sizeof(float));
  EXPECT_EQ(plan.optimizer, 2 * plan.weights);
  EXPECT_EQ(parse_byte_size("1.5G", "x"), uint64_t{3} << 29);
  EXPECT_THROW(parse_byte_size("12Q", "x"), baichuan::Error);
}

TEST(TrainDataOrder, SeededPerEpochAndResumableFromAPosition) {
  std::vector<int64_t> rows{0, 1, 2, 3, 4, 5, 6};
  DataCursor a(rows, 5);
  std::vector<int64_t> stream;
  for (int i = 0; i < 20; ++i) stream.push_back(a.next());
  std::set<int64_t> epoch0(stream.begin(), stream.begin() + 7);
  EXPECT_EQ(epoch0.size(), 7u);  // each epoch is a permutation
  EXPECT_NE(std::vector<int64_t>(stream.begin(), stream.begin() + 7), std::vector<int64_t>(stream.begin() + 7, stream.begin() + 14));
  DataCursor b(rows, 5, 1, 3);  // epoch 1, position 3 = the 11th row of the stream
  for (int i = 10; i < 20; ++i) EXPECT_EQ(b.next(), stream[static_cast<size_t>(i)]) << i;
  DataCursor other_seed(rows, 6);
  std::vector<int64_t> s6;
  for (int i = 0; i < 7; ++i) s6.push_back(other_seed.next());
  EXPECT_NE(s6, std::vector<int64_t>(stream.begin(), stream.begin() + 7));
  const RowSplit split = split_rows(8, 0.25, 42);
  EXPECT_EQ(split.eval.size(), 2u);
  EXPECT_EQ(split.train.size(), 6u);
  EXPECT_THROW(split_rows(2, 0.1, 42), baichuan::Error);  // rounds to no held-out record
}

}  // namespace train_loop_test
}  // namespace baichuan
