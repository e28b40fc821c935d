// The request bodies of OpenAI's /v1/chat/completions and /v1/completions (and llama.cpp's
// /tokenize and /detokenize), parsed and checked field by field: every refusal is an ApiError naming
// the field. No HTTP here: http_server.cpp moves the bytes.
//
// Choices where OpenAI's parameters do not map onto Baichuan 2's sampling:
//   - temperature 0 means greedy decoding, and then the repetition penalty is 1 unless the request
//     sets repetition_penalty (as `baichuan generate --greedy`);
//   - frequency_penalty and presence_penalty are accepted only when 0: anything else is refused with
//     400 rather than silently ignored (use repetition_penalty, the model's own penalty);
//   - unset sampling fields take the model's generation_config.json values; null counts as unset;
//   - response_format {"type": "json_object"} constrains decoding to one JSON object (see
//     generate/json_constraint.h); a stop string or max_tokens below 2 can still cut it short.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "generate/sampling.h"
#include "model/config.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"

namespace baichuan::server {

// Parses JSON text; bad JSON (including invalid UTF-8 in a string) is a 400.
nlohmann::json parse_json_body(std::string_view body);

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

// /tokenize {"content": text} and /detokenize {"tokens": [ids]} (as llama.cpp's server).
std::string parse_tokenize_request(const nlohmann::json& body);
std::vector<int32_t> parse_detokenize_request(const nlohmann::json& body, int64_t vocab_size);

}  // namespace baichuan::server
