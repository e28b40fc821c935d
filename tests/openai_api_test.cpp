// The OpenAI request parsing and answer JSON of the server, without HTTP: every malformed field is a
// 400 whose message names the field.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "server/generation_plan.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "shared_data.h"

namespace baichuan::server {
namespace openai_api_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;

GenerationConfig defaults() { return GenerationConfig{}; }

CompletionRequest chat(const std::string& body) {
  return parse_completion_request(parse_json_body(body), Endpoint::ChatCompletions, defaults());
}
CompletionRequest completion(const std::string& body) {
  return parse_completion_request(parse_json_body(body), Endpoint::Completions, defaults());
}
CompletionRequest chat_request(const json& messages) {
  return parse_completion_request(json{{"messages", messages}}, Endpoint::ChatCompletions, defaults());
}

// Expects a 400 whose message mentions `needle` (the field), and returns the error.
template <typename F>
ApiError expect_400(F&& f, const std::string& needle) {
  try {
    f();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    return e;
  }
  ADD_FAILURE() << "no ApiError; expected one mentioning " << needle;
  return ApiError(0, "");
}

TEST(OpenAiApi, ChatDefaultsComeFromTheGenerationConfig) {
  auto r = chat(R"({"model":"x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi");
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seeded);
  const GenerationConfig g;
  EXPECT_FALSE(r.sampling.greedy);
  EXPECT_FLOAT_EQ(r.sampling.temperature, g.temperature);
  EXPECT_EQ(r.sampling.top_k, g.top_k);
  EXPECT_FLOAT_EQ(r.sampling.top_p, g.top_p);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, g.repetition_penalty);
}

TEST(OpenAiApi, ParsesEveryParameter) {
  auto r = chat(R"({"messages":[{"role":"developer","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                   {"role":"assistant","content":null},{"role":"user","content":"q"}],
                   "max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":3,"repetition_penalty":1.2,
                   "frequency_penalty":0,"presence_penalty":0.0,"seed":42,"stop":["x","yz"],"n":1,"stream":true,
                   "stream_options":{"include_usage":true},"user":"ignored","logit_bias":null})");
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.2f);
  EXPECT_TRUE(r.seeded);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x", "yz"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);

  auto c = completion(R"({"prompt":"once upon","max_tokens":3,"stop":"\n","temperature":null,"ignore_eos":true})");
  EXPECT_EQ(c.prompt, "once upon");
  EXPECT_EQ(c.max_tokens, 3);
  EXPECT_EQ(c.stop, (std::vector<std::string>{"\n"}));
  EXPECT_TRUE(c.ignore_eos);
  EXPECT_FALSE(c.sampling.greedy);  // null = unset

  auto ids = completion(R"({"prompt":[1,2,3]})");
  ASSERT_TRUE(ids.prompt_ids);
  EXPECT_EQ(*ids.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(completion(R"({"prompt":["one"]})").prompt, "one");
}

TEST(OpenAiApi, TemperatureZeroIsPlainGreedy) {
  auto r = completion(R"({"prompt":"a","temperature":0})");
  EXPECT_TRUE(r.sampling.greedy);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.0f);
  auto p = completion(R"({"prompt":"a","temperature":0,"repetition_penalty":1.3})");
  EXPECT_TRUE(p.sampling.greedy);
  EXPECT_FLOAT_EQ(p.sampling.repetition_penalty, 1.3f);
}

TEST(OpenAiApi, MalformedBodiesAre400sNamingTheField) {
  expect_400([] { parse_json_body("{\"messages\": ["); }, "not valid JSON");
  expect_400([] { parse_json_body("{\"prompt\": \"\xff\xfe\"}"); }, "not valid JSON");       // invalid UTF-8
  expect_400([] { parse_json_body(R"({"prompt": "\ud800"})"); }, "not valid JSON");          // lone surrogate
  expect_400([] { chat("[1,2]"); }, "JSON object");
  expect_400([] { chat("{}"); }, "messages");
  expect_400([] { chat(R"({"messages":5})"); }, "messages");
  expect_400([] { chat(R"({"messages":[]})"); }, "messages");
  expect_400([] { chat(R"({"messages":["hi"]})"); }, "messages[0]");
  expect_400([] { chat(R"({"messages":[{"content":"hi"}]})"); }, "messages[0].role");
  expect_400([] { chat(R"({"messages":[{"role":"user"}]})"); }, "messages[0].content");
  expect_400([] { chat(R"({"messages":[{"role":"user","content":5}]})"); }, "messages[0].content");
  expect_400([] { chat(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"); },
             "messages[0].content[0].type");
  expect_400([] { chat(R"({"messages":[{"role":"wizard","content":"hi"}]})"); }, "messages[0].role");
  expect_400([] { chat(R"({"messages":[{"role":"tool","content":"hi"}]})"); }, "messages[0].role");
  expect_400([] { chat(R"({"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]})"); },
             "messages[1].role");
  const std::string m = R"("messages":[{"role":"user","content":"hi"}])";
  expect_400([&] { chat("{" + m + R"(,"max_tokens":"x"})"); }, "max_tokens");
  expect_400([&] { chat("{" + m + R"(,"max_tokens":-1})"); }, "max_tokens");
  expect_400([&] { chat("{" + m + R"(,"max_tokens":1.5})"); }, "max_tokens");
  expect_400([&] { chat("{" + m + R"(,"max_completion_tokens":-5})"); }, "max_completion_tokens");
  expect_400([&] { chat("{" + m + R"(,"temperature":-0.1})"); }, "temperature");
  expect_400([&] { chat("{" + m + R"(,"temperature":"hot"})"); }, "temperature");
  expect_400([&] { chat("{" + m + R"(,"top_p":0})"); }, "top_p");
  expect_400([&] { chat("{" + m + R"(,"top_p":1.5})"); }, "top_p");
  expect_400([&] { chat("{" + m + R"(,"top_k":-1})"); }, "top_k");
  expect_400([&] { chat("{" + m + R"(,"repetition_penalty":0})"); }, "repetition_penalty");
  expect_400([&] { chat("{" + m + R"(,"frequency_penalty":0.5})"); }, "frequency_penalty");
  expect_400([&] { chat("{" + m + R"(,"presence_penalty":-1})"); }, "presence_penalty");
  expect_400([&] { chat("{" + m + R"(,"seed":"s"})"); }, "seed");
  expect_400([&] { chat("{" + m + R"(,"stop":5})"); }, "stop");
  expect_400([&] { chat("{" + m + R"(,"stop":["a",1]})"); }, "stop[1]");
  expect_400([&] { chat("{" + m + R"(,"stop":""})"); }, "stop");
  expect_400([&] { chat("{" + m + R"(,"n":2})"); }, "'n'");
  expect_400([&] { chat("{" + m + R"(,"stream":"yes"})"); }, "stream");
  expect_400([&] { chat("{" + m + R"(,"stream_options":{"include_usage":1}})"); }, "stream_options.include_usage");
  expect_400([&] { chat("{" + m + R"(,"model":7})"); }, "model");
  expect_400([] { completion("{}"); }, "prompt");
  expect_400([] { completion(R"({"prompt":5})"); }, "prompt");
  expect_400([] { completion(R"({"prompt":["a","b"]})"); }, "prompt");
  expect_400([] { completion(R"({"prompt":[1,-2]})"); }, "prompt[1]");
  auto e = expect_400([&] { chat("{" + m + R"(,"top_k":"3"})"); }, "top_k");
  EXPECT_EQ(e.param, "top_k");
  EXPECT_EQ(e.type, "invalid_request_error");
}

// Fields the server does not implement are refused by name when they ask for something (they used to
// be accepted and silently ignored), and accepted when off (issue 11, point 11).
TEST(OpenAiApi, UnsupportedFieldsAreRefusedByNameUnlessOff) {
  const std::string m = R"("messages":[{"role":"user","content":"hi"}])";
  for (const char* on : {R"("suffix":"end")", R"("tools":[{"type":"function"}])", R"("tool_choice":"auto")",
                         R"("functions":[{"name":"f"}])", R"("function_call":"auto")", R"("best_of":2)"}) {
    const std::string body = "{" + m + "," + on + "}";
    const std::string name = std::string(on).substr(1, std::string(on).find('"', 1) - 1);
    auto e = expect_400([&] { chat(body); }, "is not supported");
    EXPECT_EQ(e.param, name) << body;
    expect_400([&] { completion(R"({"prompt":"a",)" + std::string(on) + "}"); }, name);
  }
  EXPECT_EQ(expect_400([&] { chat("{" + m + R"(,"n":2})"); }, "n").param, "n");
  auto e = expect_400([&] { chat("{" + m + R"(,"response_format":{"type":"json_schema","json_schema":{}}})"); },
                      "json_schema");
  EXPECT_EQ(e.param, "response_format");
  EXPECT_EQ(expect_400([&] { chat("{" + m + R"(,"echo":true})"); }, "echo").param, "echo");
  for (const char* off : {R"("logprobs":false)", R"("top_logprobs":0)", R"("echo":false)", R"("logit_bias":{})",
                          R"("suffix":"")", R"("tools":[])", R"("logprobs":null)", R"("best_of":1)",
                          R"("response_format":{"type":"text"})"})
    EXPECT_NO_THROW(chat("{" + m + "," + off + "}")) << off;
}

TEST(OpenAiApi, LogprobsEchoLogitBiasAndJsonObjectAreParsed) {
  const std::string m = R"("messages":[{"role":"user","content":"hi"}])";
  EXPECT_EQ(chat("{" + m + "}").top_logprobs, -1);
  EXPECT_EQ(chat("{" + m + R"(,"logprobs":true})").top_logprobs, 0);
  EXPECT_EQ(chat("{" + m + R"(,"logprobs":true,"top_logprobs":20})").top_logprobs, 20);
  expect_400([&] { chat("{" + m + R"(,"logprobs":true,"top_logprobs":21})"); }, "top_logprobs");
  expect_400([&] { chat("{" + m + R"(,"top_logprobs":2})"); }, "top_logprobs");
  expect_400([&] { chat("{" + m + R"(,"logprobs":3})"); }, "logprobs");  // chat's is a boolean

  auto c = completion(R"({"prompt":"a","logprobs":5,"echo":true})");
  EXPECT_EQ(c.top_logprobs, 5);
  EXPECT_TRUE(c.echo);
  EXPECT_EQ(completion(R"({"prompt":"a","logprobs":0})").top_logprobs, 0);
  expect_400([] { completion(R"({"prompt":"a","logprobs":6})"); }, "logprobs");
  expect_400([] { completion(R"({"prompt":"a","logprobs":true})"); }, "logprobs");

  auto b = chat("{" + m + R"(,"logit_bias":{"5":-100,"7":2.5}})");
  EXPECT_EQ(b.logit_bias, (std::vector<std::pair<int64_t, double>>{{5, -100.0}, {7, 2.5}}));
  for (const char* bad : {R"({"x":1})", R"({"-1":1})", R"({"5":101})", R"({"5":"1"})", R"([1])"}) {
    auto e = expect_400([&] { chat("{" + m + R"(,"logit_bias":)" + bad + "}"); }, "logit_bias");
    EXPECT_EQ(e.param, "logit_bias");
  }
  EXPECT_NE(std::string(expect_400([&] { chat("{" + m + R"(,"logit_bias":{"5":101}})"); }, "101").what())
                .find("\"5\""),
            std::string::npos);

  EXPECT_TRUE(chat("{" + m + R"(,"response_format":{"type":"json_object"}})").json_object);
  EXPECT_FALSE(chat("{" + m + R"(,"response_format":{"type":"text"}})").json_object);
  expect_400([&] { chat("{" + m + R"(,"response_format":"json"})"); }, "response_format");
}

TEST(OpenAiApi, TokenizeAndDetokenizeBodies) {
  EXPECT_EQ(parse_tokenize_request(json{{"content", "abc"}}), "abc");
  expect_400([] { parse_tokenize_request(json::object()); }, "content");
  expect_400([] { parse_tokenize_request(json{{"content", 1}}); }, "content");
  EXPECT_EQ(parse_detokenize_request(json{{"tokens", {1, 2}}}, 10), (std::vector<int32_t>{1, 2}));
  expect_400([] { parse_detokenize_request(json{{"tokens", "1"}}, 10); }, "tokens");
  expect_400([] { parse_detokenize_request(json{{"tokens", {1, 10}}}, 10); }, "tokens[1]");
  expect_400([] { parse_detokenize_request(json{{"tokens", {-1}}}, 10); }, "tokens[0]");
  expect_400([] { parse_detokenize_request(json{{"tokens", {"a"}}}, 10); }, "tokens[0]");
}

TEST(OpenAiApi, ErrorBodyHasOpenAisShape) {
  json e = error_body(ApiError(400, "bad 'top_p'", "top_p"));
  EXPECT_EQ(e["error"]["message"], "bad 'top_p'");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "top_p");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

TEST(OpenAiApi, AnswersAndChunks) {
  ResponseMeta meta = new_response_meta(Endpoint::ChatCompletions, "tiny");
  EXPECT_EQ(meta.id.rfind("chatcmpl-", 0), 0u);
  EXPECT_GT(meta.created, 0);
  json whole = completion_json(Endpoint::ChatCompletions, meta, "hello", "length", 5, 2);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["model"], "tiny");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(whole["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["total_tokens"], 7);

  json first = chunk_json(Endpoint::ChatCompletions, meta, "assistant", "", "", false);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(first.contains("usage"));
  json last = chunk_json(Endpoint::ChatCompletions, meta, std::nullopt, std::nullopt, "stop", true);
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(last["usage"].is_null());
  json usage = usage_chunk_json(Endpoint::ChatCompletions, meta, 3, 4);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 4);

  ResponseMeta cmeta = new_response_meta(Endpoint::Completions, "tiny");
  json text = chunk_json(Endpoint::Completions, cmeta, std::nullopt, "abc", "", false);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "abc");
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  // A lone byte-fallback piece must not make the answer unserializable.
  EXPECT_NO_THROW(dump_json(json{{"text", std::string("\xe4")}}));
}

// An over-long prompt is refused by its size (bytes against the most bytes one token can stand
// for) before anything is tokenized: a megabyte took a second and ~60 MB to tokenize in full.
TEST(OpenAiApi, OverlongPromptsAreRefusedBeforeTokenizing) {
  const std::string path = testing::shared_path("reference/b2-7b-tiny/tokenizer.model");
  REQUIRE_SHARED(path);
  const Tokenizer t = Tokenizer::from_file(path);
  std::string megabyte;
  while (megabyte.size() < 1'000'000) megabyte += "The quick brown fox jumps over the lazy dog. ";
  const ChatTemplateConfig chat;
  const CompletionRequest text = completion(json{{"prompt", megabyte}}.dump());
  const CompletionRequest conversation =
      chat_request({{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", megabyte}}});
  const auto start = std::chrono::steady_clock::now();
  auto e = expect_400([&] { plan_generation(text, t, chat, 16, 4096); }, cat(megabyte.size(), " bytes, so at least "));
  EXPECT_EQ(e.param, "prompt");
  EXPECT_EQ(e.code, "context_length_exceeded");
  e = expect_400([&] { plan_generation(conversation, t, chat, 16, 4096); }, " bytes, so at least ");
  EXPECT_EQ(e.param, "messages[1].content");
  // Tokenizing a megabyte takes a second or more (more under the sanitizers); refusing it, nothing.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
}

// Under the size bound but over the context: tokenizing stops at the cap, a few chunks in.
TEST(OpenAiApi, PromptsOverTheContextAreTokenizedOnlyUpToIt) {
  const std::string path = testing::shared_path("reference/b2-7b-tiny/tokenizer.model");
  REQUIRE_SHARED(path);
  const Tokenizer t = Tokenizer::from_file(path);
  std::string text;
  while (text.size() < 20'000) text += "apple banana cherry ";  // ~3000 tokens, within 96 bytes x 255
  const ChatTemplateConfig chat;
  auto e = expect_400([&] { plan_generation(completion(json{{"prompt", text}}.dump()), t, chat, 16, 256); },
                      "more than 255 tokens");
  EXPECT_EQ(e.code, "context_length_exceeded");
  e = expect_400([&] { plan_generation(chat_request({{{"role", "user"}, {"content", text}}}), t, chat, 16, 256); },
                 "more than 255 tokens");
  EXPECT_EQ(e.param, "messages");
  // What fits is planned as before.
  auto plan = plan_generation(completion(R"({"prompt":"apple banana","max_tokens":4})"), t, chat, 16, 256);
  EXPECT_EQ(plan.prompt, t.encode("apple banana"));
  EXPECT_EQ(plan.options.max_new_tokens, 4);
}

}  // namespace
}  // namespace baichuan::server
