#include "server/generation_plan.h"

#include <algorithm>

namespace baichuan::server {

namespace {

[[noreturn]] void context_exceeded(const std::string& param, const std::string& size, int64_t context) {
  throw ApiError(400,
                 cat("'", param, "' has ", size, " but the context is ", context,
                     " tokens, which must hold the prompt and at least one generated token: shorten it",
                     " (or start the server with a larger --ctx)"),
                 param, "context_length_exceeded");
}

// A text that cannot fit in `max_tokens` even at the most bytes one token stands for is refused by
// its size alone: tokenizing a megabyte costs a second and tens of megabytes.
void check_text_size(std::string_view text, const Tokenizer& tokenizer, int64_t max_tokens, const std::string& param,
                     int64_t context) {
  const size_t per_token = tokenizer.max_bytes_per_token();
  if (per_token == 0 || text.size() <= per_token * static_cast<size_t>(max_tokens)) return;
  context_exceeded(param, cat(text.size(), " bytes, so at least ", (text.size() + per_token - 1) / per_token, " tokens,"),
                   context);
}

}  // namespace

PlannedGeneration plan_generation(const CompletionRequest& request, const Tokenizer& tokenizer,
                                  const ChatTemplateConfig& chat, int64_t default_max_tokens, int64_t context) {
  PlannedGeneration plan;
  const int64_t wanted = request.max_tokens.value_or(default_max_tokens);
  const int64_t most = std::max<int64_t>(context - 1, 0);  // prompt tokens that leave room for one more
  const char* what = "prompt";
  if (request.endpoint == Endpoint::ChatCompletions) {
    what = "messages";
    for (size_t i = 0; i < request.messages.size(); ++i)
      check_text_size(request.messages[i].content, tokenizer, most, cat("messages[", i, "].content"), context);
    // The official template drops old rounds to leave room for max_new_tokens; a smaller max_tokens
    // leaves more history, a larger one never less than the model's own default budget. A message
    // that alone is longer than the context is refused (the template would cut off its start, role
    // token included), and its tokenizing stops there.
    ChatTemplateConfig c = chat;
    c.max_new_tokens = std::min(wanted, chat.max_new_tokens);
    c.max_message_tokens = std::max<int64_t>(most, 1);
    try {
      plan.prompt = build_chat_input(tokenizer, request.messages, c);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages", "context_length_exceeded");
    }
  } else if (request.prompt_ids) {
    plan.prompt = *request.prompt_ids;
    const int32_t vocab = tokenizer.vocab_size();
    for (int32_t id : plan.prompt)
      if (id < 0 || id >= vocab)
        bad_field("prompt", cat("holds token id ", id, ", outside the vocabulary [0, ", vocab, ")"));
  } else {
    check_text_size(request.prompt, tokenizer, most, "prompt", context);
    EncodeOptions capped;
    capped.max_tokens = static_cast<size_t>(most);
    plan.prompt = tokenizer.encode(request.prompt, capped);
    if (static_cast<int64_t>(plan.prompt.size()) > most)
      context_exceeded("prompt", cat("more than ", most, " tokens"), context);
  }
  const auto n = static_cast<int64_t>(plan.prompt.size());
  if (n == 0) bad_field(what, "is empty: there is nothing to continue from");
  if (n >= context)
    throw ApiError(400,
                   cat("the prompt has ", n, " tokens but the context is ", context,
                       " tokens, which must hold the prompt and at least one generated token: shorten the ", what,
                       " (or start the server with a larger --ctx)"),
                   what, "context_length_exceeded");

  const int32_t vocab = tokenizer.vocab_size();
  for (const auto& [id, bias] : request.logit_bias) {
    if (id >= vocab)
      bad_field("logit_bias", cat("has the key \"", id, "\", outside the vocabulary [0, ", vocab, ")"));
    plan.options.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias));
  }
  plan.options.top_logprobs = request.top_logprobs;
  if (request.echo) {
    plan.options.prompt_logprobs = true;
    plan.echo = request.prompt_ids ? tokenizer.decode(*request.prompt_ids) : request.prompt;
  }
  plan.options.max_new_tokens = std::min(wanted, context - n);
  plan.options.ignore_eos = request.ignore_eos;
  plan.options.sampling = request.sampling;
  plan.options.stop = request.stop;
  return plan;
}

}  // namespace baichuan::server
