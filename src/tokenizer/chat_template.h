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
  // true (the official template): "<reserved_107>", "</s>", ... typed in a message become those
  // tokens, as the Hugging Face tokenizer makes them. false (serve's default): they stay text, so a
  // message cannot forge a turn (see EncodeOptions::special_tokens).
  bool special_tokens_in_messages = true;
  // > 0: a message (or the system text) of more tokens is an Error, found without tokenizing the
  // rest of it; 0 (the official template): any length, what does not fit is dropped or cut.
  int64_t max_message_tokens = 0;
};

// Throws Error for an empty conversation, an unknown role, a system message that is not first, or a
// message over config.max_message_tokens.
std::vector<int32_t> build_chat_input(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                      const ChatTemplateConfig& config);

// Parses a JSON array of {"role": ..., "content": ...} objects; `what` names the source in errors.
std::vector<ChatMessage> parse_chat_messages(const std::string& json_text, const std::string& what);

}  // namespace baichuan
