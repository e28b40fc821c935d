// Step-wise decoding: streamed text adds up to the result, stop strings never reach the stream
// (even when split across tokens), chunked prompts give the same tokens.
#include "generate/decoding.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "generate/generator.h"
#include "greedy.h"
#include "shared_data.h"

namespace baichuan {
namespace decoding_test {  // named, not anonymous: the tests compile as a unity build

class DecodingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(dir + "/model.safetensors");
    model_ = load_model(dir);
    model_->set_kv_type(DType::F32);
    prompt_ = model_->tokenizer().encode("床前明月光，疑是地上霜。");
  }

  // Runs one decoding to the end; returns the result and fills `streamed` with the callback text.
  GenerateResult run(const GenerateOptions& o, std::string& streamed, int64_t chunk = 0) {
    CachedSequence sequence(model_->new_cache(256));
    Decoding d(*model_, sequence, prompt_, o, chunk);
    while (!d.done())
      d.step(context_, pool_, [&](int32_t, std::string_view text) {
        streamed += text;
        return true;
      });
    return d.result();
  }

  std::unique_ptr<Model> model_;
  std::vector<int32_t> prompt_;
  ModelContext context_;
  ThreadPool pool_{2};
};

TEST_F(DecodingTest, StreamedTextIsTheResultText) {
  GenerateOptions o = testing::greedy_options(20);
  std::string streamed;
  GenerateResult r = run(o, streamed);
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text, model_->tokenizer().decode(r.tokens));
  EXPECT_EQ(r.finish_reason, FinishReason::Length);
}

TEST_F(DecodingTest, ChunkedPromptGivesTheSameTokens) {
  GenerateOptions o = testing::greedy_options(12);
  std::string streamed;
  EXPECT_EQ(run(o, streamed, 2).tokens, testing::greedy_tokens(*model_, pool_, prompt_, 12));
}

TEST_F(DecodingTest, AStopStringEndsTheTextAndIsNeverStreamed) {
  GenerateOptions o = testing::greedy_options(20);
  std::string full_streamed;
  const std::string full = run(o, full_streamed).text;
  ASSERT_GT(full.size(), 12u);
  // A stop string spanning the boundary between two tokens' text, somewhere in the middle.
  auto tokens = testing::greedy_tokens(*model_, pool_, prompt_, 20);
  size_t boundary = model_->tokenizer().decode({tokens.begin(), tokens.begin() + 5}).size();
  ASSERT_GT(boundary, 2u);
  const std::string stop = full.substr(boundary - 2, 4);
  o.stop = {"never appears in this text", stop};
  std::string streamed;
  GenerateResult r = run(o, streamed);
  EXPECT_EQ(r.finish_reason, FinishReason::Stop);
  EXPECT_EQ(r.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(streamed, r.text);
}

TEST_F(DecodingTest, BadArgumentsAreRefused) {
  CachedSequence sequence(model_->new_cache(8));
  GenerateOptions o;
  EXPECT_THROW(Decoding(*model_, sequence, {}, o), Error);
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>(9, 1), o), Error);
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>{1, 999999}, o), Error);
  o.max_new_tokens = -1;
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>{1}, o), Error);
  o = {};
  o.logit_bias = {{999999, 1.0f}};
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>{1}, o), Error);
  o.logit_bias = {{5, 101.0f}};
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>{1}, o), Error);
  o = {};
  o.top_logprobs = 21;
  EXPECT_THROW(Decoding(*model_, sequence, std::vector<int32_t>{1}, o), Error);
}

TEST_F(DecodingTest, PromptLogprobsAndProgressDoNotDependOnTheChunk) {
  GenerateOptions o = testing::greedy_options(3);
  o.top_logprobs = 2;
  o.prompt_logprobs = true;
  std::vector<std::pair<int64_t, int64_t>> progress;
  o.on_prompt_progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  std::string streamed;
  const GenerateResult whole = run(o, streamed);
  const auto n = static_cast<int64_t>(prompt_.size());
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{n, n}}));
  progress.clear();
  const GenerateResult chunked = run(o, streamed, 3);
  ASSERT_EQ(progress.size(), static_cast<size_t>((n + 2) / 3));
  EXPECT_EQ(progress[0], (std::pair<int64_t, int64_t>{3, n}));
  EXPECT_EQ(progress.back(), (std::pair<int64_t, int64_t>{n, n}));
  ASSERT_EQ(whole.prompt_logprobs.size(), prompt_.size() - 1);
  ASSERT_EQ(chunked.prompt_logprobs.size(), prompt_.size() - 1);
  for (size_t i = 0; i + 1 < prompt_.size(); ++i) {
    EXPECT_EQ(whole.prompt_logprobs[i].chosen.id, prompt_[i + 1]);
    EXPECT_EQ(chunked.prompt_logprobs[i].chosen.id, prompt_[i + 1]);
    EXPECT_NEAR(whole.prompt_logprobs[i].chosen.logprob, chunked.prompt_logprobs[i].chosen.logprob, 1e-4);
    EXPECT_EQ(whole.prompt_logprobs[i].top.size(), 2u);
  }
  ASSERT_EQ(whole.logprobs.size(), 3u);
  EXPECT_EQ(whole.tokens, chunked.tokens);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(whole.logprobs[i].chosen.id, whole.tokens[i]);
}

}  // namespace
}  // namespace baichuan
