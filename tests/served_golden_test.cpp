// The official greedy answers through the OpenAI server, for the float checkpoint and the official
// 4-bit Chat layout (bitsandbytes NF4): every golden chat through /v1/chat/completions and every golden
// prompt through /v1/completions, at temperature 0, give the golden tokens (up to the first EOS, where
// the server stops) and their text.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "generate/chat_prompt.h"
#include "golden.h"
#include "model/model.h"
#include "running_server.h"
#include "shared_data.h"

namespace baichuan::server {
namespace served_golden_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;

// The golden tokens the server should answer with: those before the first EOS (the golden ones were
// generated without stopping there).
std::vector<int32_t> until_eos(std::vector<int32_t> ids, int32_t eos) {
  ids.erase(std::find(ids.begin(), ids.end(), eos), ids.end());
  return ids;
}

class ServedGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = testing::shared_path("reference/" + GetParam());
    REQUIRE_SHARED(testing::golden_json_path(dir_));
    golden_ = testing::read_golden(dir_);
    model_ = load_model(dir_);
    model_->set_kv_type(DType::F32);  // the golden bar's exact path
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.model_name = GetParam();
    o.chat = chat_template_config(*model_);
    server_ = std::make_unique<RunningServer>(*model_, pool_, SchedulerOptions{2, 512, 8, 256}, o);
  }

  // POSTs `body` and checks the answer is `want` (token count, text, finish reason); returns it.
  json expect_answer(const std::string& path, const json& body, const std::vector<int32_t>& want, size_t asked) {
    httplib::Client client = server_->client();
    auto res = client.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(res) << "no answer from " << path;
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    json r = json::parse(res->body);
    const json& choice = r["choices"][0];
    const std::string text = path == "/v1/completions" ? choice["text"] : choice["message"]["content"];
    EXPECT_EQ(text, model_->tokenizer().decode(want)) << body.dump();
    EXPECT_EQ(r["usage"]["completion_tokens"], want.size()) << body.dump();
    EXPECT_EQ(choice["finish_reason"], want.size() == asked ? "length" : "stop") << body.dump();
    return r;
  }

  std::string dir_;
  json golden_;
  std::unique_ptr<Model> model_;
  ThreadPool pool_{2};
  std::unique_ptr<RunningServer> server_;
};

TEST_P(ServedGolden, ChatsAnswerTheOfficialGreedyTokens) {
  const int32_t eos = model_->generation().eos_token_id;
  for (const json& c : golden_["chats"]) {
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    json body = {{"messages", c["messages"]}, {"max_tokens", greedy.size()}, {"temperature", 0}};
    json r = expect_answer("/v1/chat/completions", body, until_eos(greedy, eos), greedy.size());
    EXPECT_EQ(r["usage"]["prompt_tokens"], c["ids"].size()) << c["messages"].dump();
  }
}

TEST_P(ServedGolden, CompletionsAnswerTheOfficialGreedyTokens) {
  const int32_t eos = model_->generation().eos_token_id;
  for (const json& p : golden_["prompts"]) {
    const auto greedy = p["greedy"].get<std::vector<int32_t>>();
    json body = {{"prompt", p["text"]}, {"max_tokens", greedy.size()}, {"temperature", 0}};
    json r = expect_answer("/v1/completions", body, until_eos(greedy, eos), greedy.size());
    EXPECT_EQ(r["usage"]["prompt_tokens"], p["ids"].size()) << p["text"];
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, ServedGolden, ::testing::Values("b2-7b-tiny", "b2-7b-tiny-4bits"),
                         [](const auto& info) {
                           return info.param == "b2-7b-tiny" ? std::string("Float") : std::string("FourBit");
                         });

}  // namespace served_golden_test
}  // namespace baichuan::server
