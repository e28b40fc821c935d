// libFuzzer target for the server's request path: an HTTP body (JSON) -> parse_json_body -> the
// request of /v1/chat/completions or /v1/completions (the first byte picks) -> plan_generation with
// the bundled tokenizer; and the /tokenize and /detokenize bodies. Every refusal must be an ApiError
// with a 4xx status whose error body serializes; a planned generation's prompt ids lie inside the
// vocabulary and its max_new_tokens fits the context after the prompt.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "fuzz_support.h"
#include "server/generation_plan.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "tokenizer/tokenizer.h"

namespace fuzz_http_request {

constexpr int64_t kContext = 256;

const baichuan::Tokenizer& tokenizer() {
  static const baichuan::Tokenizer t = baichuan::Tokenizer::from_file(BAICHUAN_MODELS_DIR "/tokenizer.model");
  return t;
}

void check_refusal(const baichuan::server::ApiError& e) {
  if (e.status < 400 || e.status >= 500) fuzz_support::property_failed("a request refused with status ", e.status);
  (void)baichuan::server::dump_json(baichuan::server::error_body(e));
}

}  // namespace fuzz_http_request

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using namespace baichuan::server;
  using fuzz_http_request::check_refusal;
  if (size == 0) return 0;
  const auto endpoint = (data[0] & 1) ? Endpoint::Completions : Endpoint::ChatCompletions;
  const std::string_view body = fuzz_support::as_text(data + 1, size - 1);
  const Tokenizer& tokenizer = fuzz_http_request::tokenizer();
  nlohmann::json json;
  try {
    json = parse_json_body(body);
  } catch (const ApiError& e) {
    check_refusal(e);
    return 0;
  }
  try {
    CompletionRequest request = parse_completion_request(json, endpoint, GenerationConfig{});
    ChatTemplateConfig chat;
    chat.model_max_length = fuzz_http_request::kContext;
    PlannedGeneration plan = plan_generation(request, tokenizer, chat, 64, fuzz_http_request::kContext);
    for (int32_t id : plan.prompt)
      if (id < 0 || id >= tokenizer.vocab_size()) fuzz_support::property_failed("prompt id ", id, " outside the vocabulary");
    if (plan.options.max_new_tokens < 0 ||
        static_cast<int64_t>(plan.prompt.size()) + plan.options.max_new_tokens > fuzz_http_request::kContext)
      fuzz_support::property_failed("a prompt of ", plan.prompt.size(), " ids with max_new_tokens ",
                                    plan.options.max_new_tokens, " does not fit the context of ", fuzz_http_request::kContext);
  } catch (const ApiError& e) {
    check_refusal(e);
  }
  try {
    (void)tokenizer.encode(parse_tokenize_request(json));
  } catch (const ApiError& e) {
    check_refusal(e);
  }
  try {
    (void)tokenizer.decode(parse_detokenize_request(json, tokenizer.vocab_size()));
  } catch (const ApiError& e) {
    check_refusal(e);
  }
  return 0;
}
