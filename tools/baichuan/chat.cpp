// baichuan chat: interactive multi-turn chat. Each turn goes through the official chat template;
// the KV cache of the conversation so far is reused, so only the new turn is computed.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <limits>

#include "commands.h"
#include "common.h"
#include "generate/generator.h"
#include "progress.h"

namespace baichuan::cli {

namespace {

// Ctrl-C presses since the last answer began: the first stops the answer (the conversation stays);
// a press while waiting for input, or a second one, quits.
std::atomic<int> chat_interrupts{0};

void on_chat_interrupt(int) { chat_interrupts.fetch_add(1); }

constexpr const char* kChatHelp =
    "Type a message and press Enter.\n"
    "  /reset   start a new conversation (the system prompt stays)\n"
    "  /help    this text\n"
    "  /exit    quit (or Ctrl-D)\n"
    "Ctrl-C stops an answer and keeps the conversation; Ctrl-C at the prompt quits.\n";

struct ChatCommand {
  ModelOptions model;
  DecodingOptions decoding;
  std::string system;
  int64_t ctx = 0;

  int run() {
    std::signal(SIGINT, on_chat_interrupt);  // before the load, so an early Ctrl-C is not fatal
    auto m = model.load();
    const GenerateOptions options = decoding.options(m->generation());
    ChatTemplateConfig tmpl = chat_template_config(*m);
    // The template keeps each prompt within its max length - max_new_tokens, so prompt and answer fit
    // in the context; an answer that runs past it ends with finish reason "length". Without --ctx and
    // -n this is the official prompt (model_max_length, generation_config's max_new_tokens).
    const int64_t context = ctx > 0 ? ctx : m->config().model_max_length;
    tmpl.model_max_length = context;
    // -n -1 (no limit) reserves the official max_new_tokens for the answer, as without -n: reserving
    // the whole context would leave the prompt one token.
    const bool answer_limit = decoding.n_predict && *decoding.n_predict >= 0;
    tmpl.max_new_tokens = std::min(answer_limit ? options.max_new_tokens : tmpl.max_new_tokens, context - 1);
    ThreadPool pool(model.thread_count());
    Generator generator(*m, pool, context);

    const bool tty = isatty(STDIN_FILENO);
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    if (tty) std::cerr << kChatHelp;
    std::string line;
    for (;;) {
      chat_interrupts = 0;
      if (tty) std::cout << "\n> " << std::flush;
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (chat_interrupts > 0) break;  // Ctrl-C at the prompt
      if (line == "/help") {
        std::cout << kChatHelp;
        continue;
      }
      if (line == "/reset") {
        messages.resize(system.empty() ? 0 : 1);
        std::cout << "(conversation cleared)\n";
        continue;
      }
      if (line.empty()) continue;
      messages.push_back({"user", line});
      auto ids = build_chat_input(m->tokenizer(), messages, tmpl);
      report_truncation(*m, messages, tmpl, ids.size());
      // A long new prompt (a pasted document) goes in chunks, with its progress on stderr.
      const auto& cached = generator.cached_ids();
      size_t reused = 0;
      while (reused < cached.size() && reused < ids.size() && cached[reused] == ids[reused]) ++reused;
      const bool long_prompt = static_cast<int64_t>(ids.size() - reused) > kLongPromptTokens;
      ProgressBar bar("prompt");
      GenerateOptions turn = options;
      if (long_prompt) turn.on_prompt_progress = prompt_progress(bar, std::chrono::steady_clock::now());
      auto result = generator.generate(
          ids, turn,
          [](int32_t, std::string_view text) {
            std::cout << text << std::flush;
            return chat_interrupts == 0;
          },
          long_prompt ? kLongPromptTokens / 2 : 0);
      std::cout << "\n";
      messages.push_back({"assistant", result.text});
      std::cerr << "[" << result.tokens.size() << " tokens, "
                << strprintf("%.1f", static_cast<double>(result.tokens.size()) / std::max(result.generate_seconds, 1e-9))
                << " tokens/s, reused " << result.reused_prompt_tokens << " cached prompt tokens"
                << (result.finish_reason == FinishReason::Cancelled ? ", stopped by Ctrl-C" : "")
                << (result.finish_reason == FinishReason::Length ? ", cut at the length limit" : "") << "]\n";
    }
    std::signal(SIGINT, SIG_DFL);
    return 0;
  }

  // The template drops whole older rounds when the history is too long for the context: say so.
  static void report_truncation(const Model& m, const std::vector<ChatMessage>& messages, ChatTemplateConfig tmpl,
                                size_t kept) {
    tmpl.model_max_length = std::numeric_limits<int32_t>::max();
    tmpl.max_new_tokens = 0;
    const size_t full = build_chat_input(m.tokenizer(), messages, tmpl).size();
    if (full > kept)
      std::cerr << "[history truncated: the oldest " << full - kept << " of " << full
                << " prompt tokens were dropped to fit the context]\n";
  }
};

}  // namespace

Run add_chat(CLI::App& app) {
  auto cmd = std::make_shared<ChatCommand>();
  cmd->model.add(app);
  cmd->model.add_lora(app);
  cmd->decoding.add(app, "Longest answer", "End an answer");
  app.add_option("-s,--system", cmd->system, "System prompt");
  app.add_option("-c,--ctx", cmd->ctx, "Context in tokens: history + answer (default: model_max_length)")
      ->check(at_least(1));
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
