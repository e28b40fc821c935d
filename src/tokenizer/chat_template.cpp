#include "tokenizer/chat_template.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace baichuan {

std::vector<int32_t> build_chat_input(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                      const ChatTemplateConfig& config) {
  if (messages.empty()) fail("chat: the conversation is empty (no messages)");

  // _parse_messages: the system text (first message only), then rounds that each start at a user
  // message following a non-empty round.
  std::string system;
  std::vector<std::vector<const ChatMessage*>> rounds;
  std::vector<const ChatMessage*> round;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      if (i != 0) fail("chat: message ", i, " has role \"system\"; a system message must be the first message");
      system = m.content;
      continue;
    }
    if (m.role != "user" && m.role != "assistant")
      fail("chat: message ", i, " has unknown role \"", m.role, "\" (expected system, user or assistant)");
    if (m.role == "user" && !round.empty()) {
      rounds.push_back(std::move(round));
      round.clear();
    }
    round.push_back(&m);
  }
  if (!round.empty()) rounds.push_back(std::move(round));

  EncodeOptions encoding;
  encoding.special_tokens = config.special_tokens_in_messages;
  if (config.max_message_tokens > 0) encoding.max_tokens = static_cast<size_t>(config.max_message_tokens);
  auto encode = [&](const std::string& text, size_t index) {
    std::vector<int32_t> ids = tokenizer.encode(text, encoding);
    if (ids.size() > encoding.max_tokens)
      fail("chat: message ", index, " has more than ", encoding.max_tokens, " tokens, more than the context holds");
    return ids;
  };

  const int64_t max_input_tokens = config.model_max_length - config.max_new_tokens;
  std::vector<int32_t> system_tokens = encode(system, 0);
  const int64_t max_history_tokens = max_input_tokens - static_cast<int64_t>(system_tokens.size());

  // Newest round first; a round is kept whole or not at all, except that the newest one is always kept.
  std::vector<int32_t> history;
  for (auto r = rounds.rbegin(); r != rounds.rend(); ++r) {
    std::vector<int32_t> round_tokens;
    for (const ChatMessage* m : *r) {
      round_tokens.push_back(m->role == "user" ? config.user_token_id : config.assistant_token_id);
      std::vector<int32_t> content = encode(m->content, static_cast<size_t>(m - messages.data()));
      round_tokens.insert(round_tokens.end(), content.begin(), content.end());
    }
    if (history.empty() ||
        static_cast<int64_t>(history.size() + round_tokens.size()) <= max_history_tokens) {
      history.insert(history.begin(), round_tokens.begin(), round_tokens.end());
      if (static_cast<int64_t>(history.size()) < max_history_tokens) continue;
    }
    break;
  }

  std::vector<int32_t> input = std::move(system_tokens);
  input.insert(input.end(), history.begin(), history.end());
  if (messages.back().role != "assistant") input.push_back(config.assistant_token_id);

  // input_tokens[-max_input_tokens:] with Python slice semantics: for k > 0 keep the last k (all if
  // k >= len); x[-0:] is x[0:] and keeps everything; for k < 0, x[-k:] = x[|k|:] drops the first |k|.
  const auto len = static_cast<int64_t>(input.size());
  int64_t start = 0;
  if (max_input_tokens > 0) start = std::max<int64_t>(0, len - max_input_tokens);
  else if (max_input_tokens < 0) start = std::min<int64_t>(len, -max_input_tokens);
  input.erase(input.begin(), input.begin() + start);
  return input;
}

std::vector<ChatMessage> parse_chat_messages(const std::string& json_text, const std::string& what) {
  const nlohmann::json doc = parse_json(json_text, what);
  if (!doc.is_array())
    fail(what, ": expected a JSON array of {\"role\": ..., \"content\": ...} messages, got a JSON ", doc.type_name());
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& m = doc[i];
    if (!m.is_object()) fail(what, ": message ", i, " is a JSON ", m.type_name(), ", expected an object");
    ChatMessage msg;
    for (const char* key : {"role", "content"}) {
      auto it = m.find(key);
      if (it == m.end()) fail(what, ": message ", i, " has no \"", key, "\"");
      if (!it->is_string())
        fail(what, ": message ", i, ": \"", key, "\" is a JSON ", it->type_name(), ", expected a string");
      (std::string(key) == "role" ? msg.role : msg.content) = it->get<std::string>();
    }
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      fail(what, ": message ", i, " has unknown role \"", msg.role, "\" (expected system, user or assistant)");
    messages.push_back(std::move(msg));
  }
  return messages;
}

}  // namespace baichuan
