// The official Baichuan 2 chat prompt (`build_chat_input` of the release's generation_utils.py):
// the system text first with no role token; then per round user_token_id + user ids and
// assistant_token_id + assistant ids; a final assistant_token_id unless the last message is the
// assistant's. Whole older rounds are dropped when the history exceeds
// model_max_length - max_new_tokens - len(system ids), then the result is truncated from the left.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace baichuan {

struct ChatMessage {
  std::string role;  // "system" (first message only), "user" or "assistant"
  std::string content;
};

struct ChatTemplateConfig {
  int64_t model_max_length = 4096;
  int64_t max_new_tokens = 2048;
  int32_t user_token_id = 195;
  int32_t assistant_token_id = 196;
};

// Throws Error for an empty conversation, an unknown role, or a system message that is not first.
std::vector<int32_t> build_chat_input(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                      const ChatTemplateConfig& config);

// Parses a JSON array of {"role": ..., "content": ...} objects; `what` names the source in errors.
std::vector<ChatMessage> parse_chat_messages(const std::string& json_text, const std::string& what);

}  // namespace baichuan
