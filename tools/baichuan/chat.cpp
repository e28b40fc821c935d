// baichuan chat: interactive multi-turn chat. Each turn goes through the official chat template;
// the KV cache of the conversation so far is reused, so only the new turn is computed.
#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "common.h"
#include "generate/generator.h"

namespace baichuan::cli {

Run add_chat(CLI::App& app) {
  struct Command {
    ModelOptions model;
    SamplingOptions sampling;
    std::string system;
    int64_t n_predict = -1;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  cmd->sampling.add(app);
  app.add_option("-s,--system", cmd->system, "System prompt");
  app.add_option("-n,--max-new-tokens", cmd->n_predict, "Longest answer (default: generation_config.json)");
  return [cmd] {
    auto m = cmd->model.load();
    GenerateOptions options;
    options.sampling = cmd->sampling.params(m->generation());
    options.max_new_tokens = cmd->n_predict >= 0 ? cmd->n_predict : m->generation().max_new_tokens;
    ChatTemplateConfig tmpl = chat_template_config(*m);
    ThreadPool pool(cmd->model.thread_count());
    // The template keeps each prompt within model_max_length - max_new_tokens, so prompt and answer
    // fit in model_max_length; an answer that runs past it ends with finish reason "length".
    Generator generator(*m, pool, m->config().model_max_length);
    const bool tty = isatty(STDIN_FILENO);
    std::vector<ChatMessage> messages;
    if (!cmd->system.empty()) messages.push_back({"system", cmd->system});
    if (tty) std::cerr << "Type a message and press Enter. /reset starts over, /exit (or Ctrl-D) quits.\n";
    std::string line;
    for (;;) {
      if (tty) std::cout << "\n> " << std::flush;
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line == "/reset") {
        messages.resize(cmd->system.empty() ? 0 : 1);
        std::cout << "(conversation cleared)\n";
        continue;
      }
      if (line.empty()) continue;
      messages.push_back({"user", line});
      auto ids = build_chat_input(m->tokenizer(), messages, tmpl);
      auto result = generator.generate(ids, options, [](int32_t, std::string_view text) {
        std::cout << text << std::flush;
        return true;
      });
      std::cout << "\n";
      messages.push_back({"assistant", result.text});
      std::cerr << "[" << result.tokens.size() << " tokens, "
                << static_cast<double>(result.tokens.size()) / std::max(result.generate_seconds, 1e-9)
                << " tokens/s, reused " << result.reused_prompt_tokens << " cached prompt tokens]\n";
    }
    return 0;
  };
}

}  // namespace baichuan::cli
