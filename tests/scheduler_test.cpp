// The continuous-batching scheduler against one-sequence generation on the reference checkpoint:
// requests decoded together give the tokens each gives alone; slots are reused, prefixes too.
#include "server/scheduler.h"
#include "golden.h"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "generate/generator.h"
#include "greedy.h"
#include "shared_data.h"

namespace baichuan {
namespace scheduler_test {  // named, not anonymous: the tests compile as a unity build

using server::QueueFull;
using server::RequestEvents;
using server::Scheduler;
using server::SchedulerOptions;
using testing::greedy_options;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(testing::golden_json_path(dir));
    model_ = load_model(dir);
    model_->set_kv_type(DType::F32);  // exact, so batched and alone must agree to the token
    auto golden = testing::read_golden(dir);
    for (const auto& p : golden["prompts"]) prompts_.push_back(p["ids"].get<std::vector<int32_t>>());
  }

  // Submits and returns a future of the result.
  static std::future<GenerateResult> submit(Scheduler& s, std::vector<int32_t> prompt, GenerateOptions o,
                                            TokenCallback on_token = {}) {
    auto done = std::make_shared<std::promise<GenerateResult>>();
    auto future = done->get_future();
    RequestEvents events;
    events.on_token = std::move(on_token);
    events.on_done = [done](const GenerateResult& r) { done->set_value(r); };
    s.submit(std::move(prompt), std::move(o), std::move(events));
    return future;
  }

  std::unique_ptr<Model> model_;
  std::vector<std::vector<int32_t>> prompts_;
  ThreadPool pool_{2};
};

TEST_F(SchedulerTest, BatchedRequestsGiveTheTokensEachGivesAlone) {
  SchedulerOptions options;
  options.parallel = 3;  // fewer slots than requests: the rest wait and take freed slots
  options.context = 512;  // the longest reference prompt has 273 tokens
  options.prompt_chunk = 7;  // prompts fed in pieces, interleaved with the others' decoding
  Scheduler scheduler(*model_, pool_, options);
  std::vector<std::future<GenerateResult>> results;
  for (size_t i = 0; i < prompts_.size(); ++i)
    results.push_back(submit(scheduler, prompts_[i], greedy_options(static_cast<int64_t>(10 + 3 * i))));
  std::vector<GenerateResult> batched;
  for (auto& r : results) batched.push_back(r.get());
  auto stats = scheduler.stats();
  EXPECT_EQ(stats.requests_total, static_cast<int64_t>(prompts_.size()));
  EXPECT_EQ(stats.requests_active, 0);
  EXPECT_EQ(stats.queue_depth, 0);
  // The model (its workspace) belongs to the scheduler's thread while requests run: compare after.
  for (size_t i = 0; i < prompts_.size(); ++i) {
    EXPECT_EQ(batched[i].finish_reason, FinishReason::Length);
    EXPECT_EQ(batched[i].tokens, testing::greedy_tokens(*model_, pool_, prompts_[i], 10 + 3 * i)) << "prompt " << i;
  }
}

TEST_F(SchedulerTest, AContinuedConversationReusesItsCachedPrefix) {
  SchedulerOptions options;
  options.parallel = 2;
  options.context = 128;
  Scheduler scheduler(*model_, pool_, options);
  GenerateResult first = submit(scheduler, prompts_[0], greedy_options(6)).get();
  std::vector<int32_t> continued = prompts_[0];
  continued.insert(continued.end(), first.tokens.begin(), first.tokens.end());
  continued.push_back(prompts_[1][0]);
  GenerateResult second = submit(scheduler, continued, greedy_options(5)).get();
  while (scheduler.stats().requests_active > 0) std::this_thread::yield();  // the slot is released after on_done
  // Everything but the last generated token (never fed) and the new one was cached.
  EXPECT_EQ(second.reused_prompt_tokens, static_cast<int64_t>(continued.size()) - 2);
  EXPECT_EQ(second.tokens, testing::greedy_tokens(*model_, pool_, continued, 5));
}

TEST_F(SchedulerTest, CancellingEndsTheRequestAndFreesItsSlot) {
  SchedulerOptions options;
  options.parallel = 1;
  options.context = 256;
  Scheduler scheduler(*model_, pool_, options);
  std::atomic<int> tokens{0};
  auto long_one = submit(scheduler, prompts_[0], greedy_options(200), [&](int32_t, std::string_view) {
    return ++tokens < 3;  // the client goes away after 3 tokens
  });
  GenerateResult r = long_one.get();
  EXPECT_EQ(r.finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(r.tokens.size(), 3u);
  // The slot is free again: the next request runs to completion.
  EXPECT_EQ(submit(scheduler, prompts_[1], greedy_options(4)).get().tokens.size(), 4u);
}

TEST_F(SchedulerTest, AFullQueueRefusesAndAnOversizedPromptIsAnError) {
  SchedulerOptions options;
  options.parallel = 1;
  options.max_queue = 1;
  options.context = 64;
  Scheduler scheduler(*model_, pool_, options);
  std::promise<void> release;
  auto released = release.get_future().share();
  // The first request blocks the only slot until released; the second waits; the third is refused.
  auto first = submit(scheduler, prompts_[0], greedy_options(50), [released](int32_t, std::string_view) {
    released.wait();
    return true;
  });
  auto second = submit(scheduler, prompts_[1], greedy_options(2));
  while (scheduler.stats().requests_active == 0) std::this_thread::yield();
  EXPECT_THROW(submit(scheduler, prompts_[2], greedy_options(2)), QueueFull);
  EXPECT_THROW(submit(scheduler, std::vector<int32_t>(65, 1), greedy_options(2)), Error);
  EXPECT_THROW(submit(scheduler, {}, greedy_options(2)), Error);
  EXPECT_THROW(submit(scheduler, {-1}, greedy_options(2)), Error);
  scheduler.cancel(1);  // ids count from 1
  release.set_value();
  EXPECT_EQ(first.get().finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(second.get().tokens.size(), 2u);
}

TEST_F(SchedulerTest, ShuttingDownEndsEveryRequest) {
  SchedulerOptions options;
  options.parallel = 1;
  options.context = 256;
  auto scheduler = std::make_unique<Scheduler>(*model_, pool_, options);
  auto running = submit(*scheduler, prompts_[0], greedy_options(200));
  auto waiting = submit(*scheduler, prompts_[1], greedy_options(200));
  scheduler.reset();
  EXPECT_EQ(running.get().finish_reason, FinishReason::Cancelled);
  EXPECT_EQ(waiting.get().finish_reason, FinishReason::Cancelled);
}

}  // namespace
}  // namespace baichuan
