// The JSON of OpenAI's answers: whole, or as server-sent-event chunks, with their logprobs.
//
// Logprobs are those of the distribution the token was drawn from after the logit bias, the JSON
// constraint, the repetition penalty and the temperature, before top-k/top-p truncation (under greedy
// decoding: at temperature 1); echoed prompt tokens are scored by the model's plain log-softmax.
// completions' text_offset counts characters (code points) from the start of the returned text (the
// prompt's, with echo).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "generate/sampling.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace baichuan::server {

// Serializes for the wire; invalid UTF-8 (a lone byte-fallback token) becomes U+FFFD instead of throwing.
std::string dump_json(const nlohmann::json& j);

// The identity of one answer, shared by all its chunks.
struct ResponseMeta {
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};
ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model);

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// Builds a choice's `logprobs` object a piece at a time (the whole answer is one piece; a stream
// sends one per chunk). Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob,
// bytes}]}]}; completions: {tokens, token_logprobs, top_logprobs: [{text: logprob}] (the sampled
// token always among them, so up to N+1), text_offset}.
class LogprobsWriter {
 public:
  LogprobsWriter(Endpoint endpoint, const Tokenizer& tokenizer) : endpoint_(endpoint), tokenizer_(tokenizer) {}
  // Completions with echo: the first prompt token, which nothing predicts (null logprob and top).
  nlohmann::json unscored(int32_t id);
  nlohmann::json piece(std::span<const TokenLogprobs> tokens);
  // Joins pieces into one logprobs object.
  static void append(nlohmann::json& into, const nlohmann::json& piece);

 private:
  nlohmann::json entry(const TokenLogprob* chosen, int32_t id, const std::vector<TokenLogprob>* top);
  std::string text_of(int32_t id) const;
  Endpoint endpoint_;
  const Tokenizer& tokenizer_;
  int64_t offset_ = 0;  // completions: characters before the next token
};

// The whole answer; finish_reason must be "stop" or "length". `logprobs`: null, or a LogprobsWriter object.
nlohmann::json completion_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text,
                               const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens,
                               const nlohmann::json& logprobs = nullptr);
// One streamed chunk. Chat: `role` (first chunk) and/or `content` in the delta; completions: the text.
// A non-empty finish_reason marks the last chunk.
nlohmann::json chunk_json(Endpoint endpoint, const ResponseMeta& meta, const std::optional<std::string>& role,
                          const std::optional<std::string>& content, const std::string& finish_reason,
                          bool include_usage, const nlohmann::json& logprobs = nullptr);
// The extra last chunk of stream_options.include_usage: no choices, the usage.
nlohmann::json usage_chunk_json(Endpoint endpoint, const ResponseMeta& meta, int64_t prompt_tokens,
                                int64_t completion_tokens);
std::string sse_event(const nlohmann::json& data);  // "data: {...}\n\n"
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace baichuan::server
