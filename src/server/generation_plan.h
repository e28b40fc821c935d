// From a parsed request to what the scheduler runs: the prompt ids (the chat template, or the
// completion prompt encoded) and the generation options, checked against the context and the
// vocabulary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "generate/decoding.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace baichuan::server {

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

}  // namespace baichuan::server
