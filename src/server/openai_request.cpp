#include "server/openai_request.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "generate/generation_defaults.h"

namespace baichuan::server {

using nlohmann::json;

json parse_json_body(std::string_view body) {
  try {
    return json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    // nlohmann's message says where and why (including "invalid UTF-8 byte").
    throw ApiError(400, cat("the request body is not valid JSON: ", e.what()), {}, "invalid_json");
  }
}

namespace {

// A field that is present and not null (OpenAI clients send null for "unset").
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t integer_field(const json& j, const std::string& name) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                          : static_cast<int64_t>(v);
  }
  if (!j.is_number_integer()) bad_field(name, cat("must be an integer, got a JSON ", j.type_name()));
  return j.get<int64_t>();
}

double number_field(const json& j, const std::string& name) {
  if (!j.is_number()) bad_field(name, cat("must be a number, got a JSON ", j.type_name()));
  const double v = j.get<double>();
  if (!std::isfinite(v)) bad_field(name, "must be a finite number");
  return v;
}

bool bool_field(const json& j, const std::string& name) {
  if (!j.is_boolean()) bad_field(name, cat("must be true or false, got a JSON ", j.type_name()));
  return j.get<bool>();
}

const std::string& string_field(const json& j, const std::string& name) {
  if (!j.is_string()) bad_field(name, cat("must be a string, got a JSON ", j.type_name()));
  return j.get_ref<const std::string&>();
}

// OpenAI content: a string, or an array of parts of which only {"type": "text", "text": ...} is
// understood here (the model reads text only).
std::string message_content(const json& j, const std::string& name) {
  if (j.is_null()) return {};
  if (j.is_string()) return j.get<std::string>();
  if (!j.is_array()) bad_field(name, cat("must be a string or an array of text parts, got a JSON ", j.type_name()));
  std::string text;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string part = cat(name, "[", i, "]");
    const json& p = j[i];
    if (!p.is_object())
      bad_field(part, cat("must be an object {\"type\": \"text\", \"text\": ...}, got a JSON ", p.type_name()));
    const json* type = field(p, "type");
    if (!type || !type->is_string() || type->get<std::string>() != "text")
      bad_field(part + ".type", "must be \"text\": this model reads text only");
    const json* t = field(p, "text");
    if (!t) bad_field(part + ".text", "is required");
    text += string_field(*t, part + ".text");
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* messages = field(body, "messages");
  if (!messages) throw ApiError(400, "'messages' is required: an array of {\"role\", \"content\"} objects", "messages");
  if (!messages->is_array())
    bad_field("messages",
              cat("must be an array of {\"role\", \"content\"} objects, got a JSON ", messages->type_name()));
  if (messages->empty()) bad_field("messages", "must not be empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages->size(); ++i) {
    const std::string name = cat("messages[", i, "]");
    const json& m = (*messages)[i];
    if (!m.is_object()) bad_field(name, cat("must be an object {\"role\", \"content\"}, got a JSON ", m.type_name()));
    const json* role = field(m, "role");
    if (!role) bad_field(name + ".role", "is required");
    ChatMessage msg;
    msg.role = string_field(*role, name + ".role");
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for the system message
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      bad_field(name + ".role", cat("is \"", msg.role, "\"; expected \"system\", \"user\" or \"assistant\""));
    if (msg.role == "system" && i != 0) bad_field(name + ".role", "is \"system\", but only the first message may be");
    if (!m.contains("content")) bad_field(name + ".content", "is required");
    msg.content = message_content(m["content"], name + ".content");
    out.push_back(std::move(msg));
  }
  return out;
}

void parse_prompt(const json& body, CompletionRequest& r) {
  const json* prompt = field(body, "prompt");
  if (!prompt) throw ApiError(400, "'prompt' is required: a string", "prompt");
  if (prompt->is_string()) {
    r.prompt = prompt->get<std::string>();
    return;
  }
  if (!prompt->is_array())
    bad_field("prompt", cat("must be a string or an array of token ids, got a JSON ", prompt->type_name()));
  if (prompt->size() == 1 && (*prompt)[0].is_string()) {  // a batch of one
    r.prompt = (*prompt)[0].get<std::string>();
    return;
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& id = (*prompt)[i];
    if (id.is_string()) bad_field("prompt", "holds several prompts; only one prompt per request is supported");
    const int64_t v = integer_field(id, cat("prompt[", i, "]"));
    if (v < 0 || v > std::numeric_limits<int32_t>::max())
      bad_field(cat("prompt[", i, "]"), cat("is not a token id: ", v));
    ids.push_back(static_cast<int32_t>(v));
  }
  r.prompt_ids = std::move(ids);
}

std::vector<std::string> parse_stop(const json& j) {
  constexpr size_t kMaxStops = 16;
  std::vector<std::string> stop;
  if (j.is_string()) {
    stop.push_back(j.get<std::string>());
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) stop.push_back(string_field(j[i], cat("stop[", i, "]")));
  } else {
    bad_field("stop", cat("must be a string or an array of strings, got a JSON ", j.type_name()));
  }
  if (stop.size() > kMaxStops)
    bad_field("stop", cat("has ", stop.size(), " strings; at most ", kMaxStops, " are allowed"));
  for (const auto& s : stop)
    if (s.empty()) bad_field("stop", "must not contain an empty string");
  return stop;
}

// OpenAI fields this server does not implement: refused by name when they ask for something (a
// client must not get a 200 that silently ignored them), accepted when they are off or empty.
void refuse_unsupported_fields(const json& body, Endpoint endpoint) {
  auto asks = [](const json& j) {
    if (j.is_null()) return false;
    if (j.is_boolean()) return j.get<bool>();
    if (j.is_number()) return j.get<double>() != 0;
    if (j.is_string()) return !j.get_ref<const std::string&>().empty();
    if (j.is_array() || j.is_object()) return !j.empty();
    return true;
  };
  for (const char* name : {"suffix", "tools", "tool_choice", "functions", "function_call", "best_of", "echo"}) {
    const json* j = field(body, name);
    if (!j || !asks(*j)) continue;
    if (std::string_view(name) == "best_of" && j->is_number_integer() && j->get<int64_t>() == 1) continue;
    if (std::string_view(name) == "echo") {
      if (endpoint == Endpoint::Completions) continue;
      bad_field(name, "is a /v1/completions field; chat completions do not echo the messages");
    }
    bad_field(name, "is not supported by this server");
  }
}

// chat: "logprobs": true and "top_logprobs": 0..20; completions: "logprobs": 0..5 and "echo".
void parse_logprobs(const json& body, CompletionRequest& r) {
  if (r.endpoint == Endpoint::ChatCompletions) {
    bool on = false;
    if (const json* j = field(body, "logprobs")) on = bool_field(*j, "logprobs");
    if (on) r.top_logprobs = 0;
    if (const json* j = field(body, "top_logprobs")) {
      const int64_t n = integer_field(*j, "top_logprobs");
      if (n < 0 || n > 20) bad_field("top_logprobs", cat("must be in [0, 20], got ", n));
      if (!on && n > 0) bad_field("top_logprobs", "needs \"logprobs\": true");
      if (on) r.top_logprobs = static_cast<int>(n);
    }
  } else {
    if (const json* j = field(body, "logprobs")) {
      const int64_t n = integer_field(*j, "logprobs");
      if (n < 0 || n > 5) bad_field("logprobs", cat("must be in [0, 5] (alternatives per token), got ", n));
      r.top_logprobs = static_cast<int>(n);
    }
    if (const json* j = field(body, "echo")) r.echo = bool_field(*j, "echo");
  }
}

// {"<token id>": bias, ...}; the ids are checked against the vocabulary by plan_generation().
std::vector<std::pair<int64_t, double>> parse_logit_bias(const json& j) {
  if (!j.is_object())
    bad_field("logit_bias", cat("must be an object {\"<token id>\": bias}, got a JSON ", j.type_name()));
  std::vector<std::pair<int64_t, double>> bias;
  for (const auto& [key, value] : j.items()) {
    const bool digits = !key.empty() && key.size() <= 10 && std::all_of(key.begin(), key.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (!digits) bad_field("logit_bias", cat("has the key \"", key, "\", which is not a token id"));
    const std::string name = cat("logit_bias[\"", key, "\"]");
    if (!value.is_number()) bad_field("logit_bias", cat("has ", name, " = a JSON ", value.type_name(), "; expected a number"));
    const double b = value.get<double>();
    if (!(b >= -100 && b <= 100)) bad_field("logit_bias", cat("has ", name, " = ", b, ", outside [-100, 100]"));
    bias.emplace_back(std::stoll(key), b);
  }
  return bias;
}

// {"type": "text"} (the default) or {"type": "json_object"}.
bool parse_response_format(const json& j) {
  if (!j.is_object())
    bad_field("response_format", cat("must be an object {\"type\": ...}, got a JSON ", j.type_name()));
  const json* type = field(j, "type");
  if (!type || !type->is_string()) bad_field("response_format", "needs \"type\": \"text\" or \"json_object\"");
  const auto& t = type->get_ref<const std::string&>();
  if (t == "text") return false;
  if (t == "json_object") return true;
  bad_field("response_format",
            cat("has type \"", t, "\", which is not supported by this server (only \"text\" and \"json_object\")"));
}

}  // namespace

CompletionRequest parse_completion_request(const json& body, Endpoint endpoint, const GenerationConfig& defaults) {
  if (!body.is_object())
    throw ApiError(400, cat("the request body must be a JSON object, got a JSON ", body.type_name()));
  CompletionRequest r;
  r.endpoint = endpoint;
  if (endpoint == Endpoint::ChatCompletions)
    r.messages = parse_messages(body);
  else
    parse_prompt(body, r);

  if (const json* m = field(body, "model")) string_field(*m, "model");  // any name serves the one model
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* j = field(body, name)) {
      const int64_t v = integer_field(*j, name);
      if (v < 0) bad_field(name, cat("must be >= 0, got ", v));
      r.max_tokens = v;
    }
  }
  if (const json* j = field(body, "n")) {
    const int64_t n = integer_field(*j, "n");
    if (n != 1) bad_field("n", cat("must be 1: one choice per request is supported, got ", n));
  }
  if (const json* j = field(body, "stream")) r.stream = bool_field(*j, "stream");
  if (const json* j = field(body, "stream_options")) {
    if (!j->is_object()) bad_field("stream_options", cat("must be an object, got a JSON ", j->type_name()));
    if (const json* u = field(*j, "include_usage")) r.include_usage = bool_field(*u, "stream_options.include_usage");
  }
  if (const json* j = field(body, "stop")) r.stop = parse_stop(*j);
  if (const json* j = field(body, "ignore_eos")) r.ignore_eos = bool_field(*j, "ignore_eos");

  SamplingParams& s = r.sampling;
  s = SamplingParams::from(defaults);
  if (const json* j = field(body, "temperature")) {
    const double t = number_field(*j, "temperature");
    if (t < 0) bad_field("temperature", cat("must be >= 0, got ", t));
    if (t == 0) {
      use_greedy(s);  // plain arg-max unless the request asks for a penalty below
    } else {
      s.greedy = false;
      s.temperature = static_cast<float>(t);
    }
  }
  if (const json* j = field(body, "top_p")) {
    const double p = number_field(*j, "top_p");
    if (!(p > 0 && p <= 1)) bad_field("top_p", cat("must be in (0, 1], got ", p));
    s.top_p = static_cast<float>(p);
  }
  if (const json* j = field(body, "top_k")) {
    const int64_t k = integer_field(*j, "top_k");
    if (k < 0) bad_field("top_k", cat("must be >= 0 (0 = off), got ", k));
    s.top_k = k;
  }
  if (const json* j = field(body, "repetition_penalty")) {
    const double p = number_field(*j, "repetition_penalty");
    if (!(p > 0)) bad_field("repetition_penalty", cat("must be > 0 (1 = off), got ", p));
    s.repetition_penalty = static_cast<float>(p);
  }
  for (const char* name : {"frequency_penalty", "presence_penalty"}) {
    if (const json* j = field(body, name)) {
      if (number_field(*j, name) != 0)
        bad_field(name, "is not supported (only 0); use repetition_penalty, the penalty Baichuan 2 was tuned with");
    }
  }
  refuse_unsupported_fields(body, endpoint);
  parse_logprobs(body, r);
  if (const json* j = field(body, "logit_bias")) r.logit_bias = parse_logit_bias(*j);
  if (const json* j = field(body, "response_format")) r.json_object = parse_response_format(*j);
  if (const json* j = field(body, "seed")) {
    if (j->is_number_unsigned())
      s.seed = j->get<uint64_t>();
    else
      s.seed = static_cast<uint64_t>(integer_field(*j, "seed"));
    r.seeded = true;
  }
  try {
    s.validate();
  } catch (const Error& e) {  // kept as a safety net: the checks above should have caught it
    throw ApiError(400, e.what());
  }
  return r;
}

std::string parse_tokenize_request(const json& body) {
  if (!body.is_object())
    throw ApiError(400, cat("the request body must be a JSON object, got a JSON ", body.type_name()));
  const json* content = field(body, "content");
  if (!content) throw ApiError(400, "'content' is required: the text to tokenize", "content");
  return string_field(*content, "content");
}

std::vector<int32_t> parse_detokenize_request(const json& body, int64_t vocab_size) {
  if (!body.is_object())
    throw ApiError(400, cat("the request body must be a JSON object, got a JSON ", body.type_name()));
  const json* tokens = field(body, "tokens");
  if (!tokens) throw ApiError(400, "'tokens' is required: an array of token ids", "tokens");
  if (!tokens->is_array()) bad_field("tokens", cat("must be an array of token ids, got a JSON ", tokens->type_name()));
  std::vector<int32_t> ids;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string name = cat("tokens[", i, "]");
    const int64_t id = integer_field((*tokens)[i], name);
    if (id < 0 || id >= vocab_size) bad_field(name, cat("is ", id, ", outside the vocabulary [0, ", vocab_size, ")"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace baichuan::server
