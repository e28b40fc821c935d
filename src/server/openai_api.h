// The OpenAI-compatible wire format: request bodies of /v1/chat/completions and /v1/completions
// parsed and checked field by field (every refusal is an ApiError naming the field), and the JSON of
// the answers, whole or as server-sent-event chunks. No HTTP here: http_server.cpp moves the bytes.
//
// Choices where OpenAI's parameters do not map onto Baichuan 2's sampling:
//   - temperature 0 means greedy decoding, and then the repetition penalty is 1 unless the request
//     sets repetition_penalty (as `baichuan generate --greedy`);
//   - frequency_penalty and presence_penalty are accepted only when 0: anything else is refused with
//     400 rather than silently ignored (use repetition_penalty, the model's own penalty);
//   - unset sampling fields take the model's generation_config.json values; null counts as unset;
//   - logprobs are those of the distribution the token was drawn from after the logit bias, the JSON
//     constraint, the repetition penalty and the temperature, before top-k/top-p truncation (under
//     greedy decoding: at temperature 1); echoed prompt tokens are scored by the model's plain
//     log-softmax. completions' text_offset counts characters (code points) from the start of the
//     returned text (the prompt's, with echo);
//   - response_format {"type": "json_object"} constrains decoding to one JSON object (see
//     generate/json_constraint.h); a stop string or max_tokens below 2 can still cut it short.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "generate/decoding.h"
#include "model/config.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace baichuan::server {

// A request the server refuses: the HTTP status and the fields of OpenAI's error object.
struct ApiError : Error {
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error");
  int status;
  std::string param, code, type;
};

// {"error": {"message", "type", "param", "code"}}; empty param/code become null.
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = {},
                          const std::string& code = {});
nlohmann::json error_body(const ApiError& e);

// Parses JSON text; bad JSON (including invalid UTF-8 in a string) is a 400.
nlohmann::json parse_json_body(std::string_view body);
// Serializes for the wire; invalid UTF-8 (a lone byte-fallback token) becomes U+FFFD instead of throwing.
std::string dump_json(const nlohmann::json& j);

enum class Endpoint { ChatCompletions, Completions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::ChatCompletions;
  std::vector<ChatMessage> messages;          // chat
  std::string prompt;                         // completions: text ...
  std::optional<std::vector<int32_t>> prompt_ids;  // ... or token ids
  std::optional<int64_t> max_tokens;
  SamplingParams sampling;                    // the model's defaults overridden by the request
  bool seeded = false;                        // the request chose the seed
  std::vector<std::string> stop;
  bool ignore_eos = false;                    // extension (as llama.cpp): keep going after EOS
  bool stream = false;
  bool include_usage = false;                 // stream_options.include_usage
  int top_logprobs = -1;                      // >= 0: logprobs asked (chat: top_logprobs; completions: logprobs)
  bool echo = false;                          // completions: the prompt comes back before the completion
  std::vector<std::pair<int64_t, double>> logit_bias;  // token id -> bias in [-100, 100] (ids checked by plan_generation)
  bool json_object = false;                   // response_format {"type": "json_object"}
};

// Throws ApiError(400) naming the offending field. The seed, when not given, is left to the caller.
CompletionRequest parse_completion_request(const nlohmann::json& body, Endpoint endpoint,
                                           const GenerationConfig& defaults);

// What the scheduler gets: the prompt ids and the generation options.
struct PlannedGeneration {
  std::vector<int32_t> prompt;
  GenerateOptions options;  // options.json_object is left to the caller (it holds the vocabulary's table)
  std::string echo;         // completions with echo: the prompt text
};

// Builds the prompt (chat: the official Baichuan 2 template with `chat`; completions: encode without
// BOS) and the options: max_tokens defaults to `default_max_tokens` and is capped to what fits in
// `context` after the prompt. A prompt that leaves no room in the context, or ids outside the
// vocabulary (prompt or logit_bias), is a 400.
PlannedGeneration plan_generation(const CompletionRequest& request, const Tokenizer& tokenizer,
                                  const ChatTemplateConfig& chat, int64_t default_max_tokens, int64_t context);

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

// /tokenize {"content": text} and /detokenize {"tokens": [ids]} (as llama.cpp's server).
std::string parse_tokenize_request(const nlohmann::json& body);
std::vector<int32_t> parse_detokenize_request(const nlohmann::json& body, int64_t vocab_size);

}  // namespace baichuan::server
