// The JSON-object prefix automaton against lists of valid and invalid texts and nlohmann's parser,
// the trie walk over the vocabulary against stepping every token alone, and sampling from the tiny
// model under the constraint: whatever the seed, the output parses as a JSON object.
#include "generate/json_constraint.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "generate/decoding.h"
#include "model/model.h"
#include "model/model_context.h"
#include "shared_data.h"

namespace baichuan {
namespace json_constraint_test {  // named, not anonymous: the tests compile as a unity build

// Feeds `text` byte by byte; true when every byte keeps it a JSON-object prefix.
bool is_prefix(std::string_view text, JsonPrefixState* out = nullptr) {
  JsonPrefixState s;
  const bool ok = s.step(text);
  if (out) *out = s;
  return ok;
}

const std::vector<std::string> kCompleteObjects = {
    "{}",
    " \n{ }",
    R"({"a":1})",
    R"({"a": [1, -0, 2.5e-3, 1E+2, 0.0, true, false, null, "x", {}, []]})",
    R"({"k\"\\\/\b\f\n\r\t": "\u00e9\ud83d\ude00", "n": {"m": [[[]]]}})",
    "{\"\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\": \"\xEF\xBF\xBD\"}",
};

TEST(JsonConstraint, CompleteObjectsAreAcceptedAndEveryPrefixIsAPrefix) {
  for (const auto& text : kCompleteObjects) {
    EXPECT_TRUE(nlohmann::json::accept(text)) << text;  // the list itself is valid JSON
    for (size_t n = 0; n < text.size(); ++n) {
      JsonPrefixState s;
      ASSERT_TRUE(is_prefix(text.substr(0, n), &s)) << text.substr(0, n);
      EXPECT_FALSE(s.complete()) << text.substr(0, n);
      EXPECT_GT(s.bytes_to_complete(), 0);
    }
    JsonPrefixState s;
    ASSERT_TRUE(is_prefix(text, &s)) << text;
    EXPECT_TRUE(s.complete()) << text;
    EXPECT_EQ(s.bytes_to_complete(), 0);
    EXPECT_FALSE(JsonPrefixState(s).step(' ')) << "nothing may follow the closed object";
  }
}

TEST(JsonConstraint, InvalidPrefixesAreRefused) {
  for (const char* text : {"[", "1", "\"a\"", "x", "{a", "{\"a\" 1", "{\"a\":}", "{\"a\":1,}", "{\"a\":01",
                           "{\"a\":-a", "{\"a\":1.}", "{\"a\":1.e", "{\"a\":1e}", "{\"a\":tru}",
                           "{\"a\":nul ", "{\"a\":[1,]", "{\"a\":[1}", "{\"a\":{]", "{,", "{\"a\":1}}", "{}x",
                           "{\"\\x", "{\"\\u12g", "{\"\\udc00", "{\"\\ud800\"", "{\"\\ud800\\n", "{\"\\ud800\\u0041",
                           "{\"a\n", "{\"a\x01", "{\"\x80", "{\"\xC0\xAF", "{\"\xE0\x80", "{\"\xED\xA0",
                           "{\"\xF4\x90", "{\"\xF5", "{\"\xC3\x41", "{\"a\":+1", "{\"a\":.5"}) {
    EXPECT_FALSE(is_prefix(text)) << text;
  }
}

TEST(JsonConstraint, NestingIsCappedAtTheMaximumDepth) {
  std::string deep = "{\"a\":";
  for (int i = 1; i < JsonPrefixState::kMaxDepth; ++i) deep += "[";
  JsonPrefixState s;
  ASSERT_TRUE(is_prefix(deep, &s));
  EXPECT_EQ(s.bytes_to_complete(), JsonPrefixState::kMaxDepth);  // the brackets
  EXPECT_FALSE(s.step('['));
}

TEST(JsonConstraint, BytesToCompleteIsTheShortestCompletion) {
  // Each pair: a prefix and a shortest text that completes it (written by hand).
  const std::pair<std::string, std::string> cases[] = {
      {"", "{}"},           {"{", "}"},           {"{\"", "\":0}"},     {"{\"a\"", ":0}"},
      {"{\"a\":", "0}"},    {"{\"a\":[", "]}"},   {"{\"a\":[1,", "0]}"}, {"{\"a\":1,", "\"\":0}"},
      {"{\"a\":\"\\", "n\"}"}, {"{\"a\":\"\\u0", "000\"}"}, {"{\"a\":\"\\ud83d", "\\udc00\"}"},
      {"{\"a\":\"\xF0\x9F", "\x98\x80\"}"}, {"{\"a\":fa", "lse}"}, {"{\"a\":-", "0}"}, {"{\"a\":1e", "0}"},
  };
  for (const auto& [prefix, rest] : cases) {
    JsonPrefixState s;
    ASSERT_TRUE(is_prefix(prefix, &s)) << prefix;
    EXPECT_EQ(s.bytes_to_complete(), static_cast<int64_t>(rest.size())) << prefix;
    ASSERT_TRUE(s.step(rest)) << prefix << rest;
    EXPECT_TRUE(s.complete()) << prefix << rest;
    EXPECT_TRUE(nlohmann::json::accept(prefix + rest)) << prefix << rest;
  }
}

// The automaton and nlohmann's parser agree on which texts are complete JSON objects: the valid
// objects above with one byte changed (to a byte that matters to JSON, or any byte).
TEST(JsonConstraint, AgreesWithAParserOnMutatedObjects) {
  std::mt19937 rng(11);
  const std::string interesting = "{}[]\":,\\/ \n\t0123456789-+.eEtrufalsn\x01\x7f\x80\xC3\xED\xF4";
  int complete = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string text = kCompleteObjects[rng() % kCompleteObjects.size()];
    const int edits = 1 + static_cast<int>(rng() % 2);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % text.size();
      const char c = rng() % 2 ? interesting[rng() % interesting.size()] : static_cast<char>(rng() % 256);
      switch (rng() % 3) {
        case 0: text[at] = c; break;
        case 1: text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        default: text.erase(at, 1);
      }
    }
    JsonPrefixState s;
    const bool ours = s.step(text) && s.complete();
    const bool parser = nlohmann::json::accept(text) && nlohmann::json::parse(text).is_object();
    ASSERT_EQ(ours, parser) << text;
    complete += ours;
  }
  EXPECT_GT(complete, 100);  // the mutations keep a fair share valid, so both answers are exercised
}

class JsonConstraintModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(dir + "/model.safetensors");
    model_ = load_model(dir);
    table_ = std::make_shared<JsonTokenTable>(model_->tokenizer());
  }
  std::unique_ptr<Model> model_;
  std::shared_ptr<const JsonTokenTable> table_;
  ThreadPool pool_{2};
};

TEST_F(JsonConstraintModelTest, TheTrieWalkAllowsExactlyTheTokensThatStepAlone) {
  for (const std::string prefix : {"", "{", "{\"a\": ", "{\"a\": \"text", "{\"key", "{\"a\": \"\\u12", "{\"a\": [1, tr", "{\"\xE4"}) {
    JsonPrefixState state;
    ASSERT_TRUE(state.step(prefix));
    for (int64_t budget : {int64_t{1}, int64_t{3}, std::numeric_limits<int64_t>::max()}) {
      std::vector<char> allowed;
      table_->allowed_tokens(state, budget, allowed);
      size_t count = 0;
      for (int32_t id = 0; id < table_->vocab_size(); ++id) {
        JsonPrefixState s = state;
        const bool expected =
            !table_->text(id).empty() && s.step(table_->text(id)) && s.bytes_to_complete() <= budget;
        ASSERT_EQ(allowed[static_cast<size_t>(id)] != 0, expected) << "prefix " << prefix << ", token " << id;
        count += expected;
      }
      if (budget >= state.bytes_to_complete() - 1) {  // a byte token always gets one byte closer
        EXPECT_GT(count, 0u) << prefix << " budget " << budget;
      }
    }
  }
}

TEST_F(JsonConstraintModelTest, SampledOutputAlwaysParsesAsAnObject) {
  const std::vector<int32_t> prompt = model_->tokenizer().encode("Answer in JSON:");
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    GenerateOptions o;
    o.max_new_tokens = 4 + static_cast<int64_t>(seed) * 6;  // some runs close early, others by the budget
    o.sampling.temperature = 1.5f;
    o.sampling.seed = seed;
    o.json_object = table_;
    CachedSequence sequence(model_->new_cache(128));
    Decoding d(*model_, sequence, prompt, o);
    ModelContext model_context;
    while (!d.done()) d.step(model_context, pool_, {});
    const GenerateResult& r = d.result();
    EXPECT_EQ(r.finish_reason, FinishReason::Stop) << "seed " << seed << ": " << r.text;
    EXPECT_LE(static_cast<int64_t>(r.tokens.size()), o.max_new_tokens);
    nlohmann::json parsed;
    ASSERT_NO_THROW(parsed = nlohmann::json::parse(r.text)) << "seed " << seed << ": " << r.text;
    EXPECT_TRUE(parsed.is_object()) << r.text;
  }
}

}  // namespace json_constraint_test
}  // namespace baichuan
