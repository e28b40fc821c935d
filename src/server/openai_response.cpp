#include "server/openai_response.h"

#include <ctime>
#include <random>

#include "generate/json_constraint.h"

namespace baichuan::server {

using nlohmann::json;

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  ResponseMeta meta;
  meta.id = endpoint == Endpoint::ChatCompletions ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) meta.id += kHex[rng() % 16];
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = model;
  return meta;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

json envelope(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

}  // namespace

std::string LogprobsWriter::text_of(int32_t id) const { return token_bytes(tokenizer_, id); }

json LogprobsWriter::entry(const TokenLogprob* chosen, int32_t id, const std::vector<TokenLogprob>* top) {
  const std::string text = text_of(id);
  if (endpoint_ == Endpoint::ChatCompletions) {
    auto one = [&](const std::string& t, float logprob) {
      json bytes = json::array();
      for (char c : t) bytes.push_back(static_cast<unsigned char>(c));
      return json{{"token", t}, {"logprob", logprob}, {"bytes", bytes}};
    };
    json e = one(text, chosen->logprob);
    e["top_logprobs"] = json::array();
    for (const auto& alt : *top) e["top_logprobs"].push_back(one(text_of(alt.id), alt.logprob));
    return e;
  }
  json e = {{"token", text}, {"offset", offset_}};
  for (char c : text)  // characters: every byte that does not continue a UTF-8 sequence
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++offset_;
  if (!chosen) {
    e["logprob"] = nullptr;
    e["top"] = nullptr;
    return e;
  }
  e["logprob"] = chosen->logprob;
  json alternatives = json::object();
  for (const auto& alt : *top) alternatives.emplace(text_of(alt.id), alt.logprob);  // a repeated text keeps the likelier
  alternatives.emplace(text, chosen->logprob);  // OpenAI: the sampled token is always there (up to N+1)
  e["top"] = alternatives;
  return e;
}

namespace {

// Completions' four parallel arrays from entries {token, offset, logprob, top}.
json completion_logprobs(const std::vector<json>& entries) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const json& e : entries) {
    out["tokens"].push_back(e["token"]);
    out["token_logprobs"].push_back(e["logprob"]);
    out["top_logprobs"].push_back(e["top"]);
    out["text_offset"].push_back(e["offset"]);
  }
  return out;
}

}  // namespace

json LogprobsWriter::unscored(int32_t id) { return completion_logprobs({entry(nullptr, id, nullptr)}); }

json LogprobsWriter::piece(std::span<const TokenLogprobs> tokens) {
  std::vector<json> entries;
  for (const auto& t : tokens) entries.push_back(entry(&t.chosen, t.chosen.id, &t.top));
  if (endpoint_ == Endpoint::ChatCompletions) return {{"content", entries}, {"refusal", nullptr}};
  return completion_logprobs(entries);
}

void LogprobsWriter::append(json& into, const json& piece) {
  if (into.is_null()) {
    into = piece;
    return;
  }
  for (auto& [key, value] : piece.items())
    if (value.is_array())
      for (const auto& v : value) into[key].push_back(v);
}

json completion_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text,
                     const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens,
                     const json& logprobs) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  json out = envelope(meta, chat ? "chat.completion" : "text_completion");
  json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(prompt_tokens, completion_tokens);
  return out;
}

json chunk_json(Endpoint endpoint, const ResponseMeta& meta, const std::optional<std::string>& role,
                const std::optional<std::string>& content, const std::string& finish_reason, bool include_usage,
                const json& logprobs) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  json out = envelope(meta, chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0},
                 {"logprobs", logprobs},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (role) delta["role"] = *role;
    if (content) delta["content"] = *content;
    choice["delta"] = delta;
  } else {
    choice["text"] = content.value_or("");
  }
  out["choices"] = json::array({choice});
  if (include_usage) out["usage"] = nullptr;  // OpenAI: null on every chunk but the usage chunk
  return out;
}

json usage_chunk_json(Endpoint endpoint, const ResponseMeta& meta, int64_t prompt_tokens, int64_t completion_tokens) {
  json out = envelope(meta, endpoint == Endpoint::ChatCompletions ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(prompt_tokens, completion_tokens);
  return out;
}

std::string sse_event(const json& data) { return "data: " + dump_json(data) + "\n\n"; }

}  // namespace baichuan::server
