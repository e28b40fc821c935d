// baichuan generate: continue a prompt (or answer a conversation) and print the text as it comes.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model/model_context.h"
#include "common.h"
#include "generate/decoding.h"
#include "progress.h"

namespace baichuan::cli {

namespace {

struct GenerateCommand {
  ModelOptions model;
  PromptOptions prompt;
  DecodingOptions decoding;
  int64_t ctx = 0;
  bool json = false;

  int run() {
    auto m = model.load();
    auto ids = prompt.ids(*m);
    GenerateOptions options = decoding.options(m->generation());
    int64_t context = checked_context(*m, ctx, ids.size());
    ThreadPool pool(model.thread_count());
    // The cache holds the prompt and the answer, never more than the context (-n may be "no limit").
    const int64_t room = context - static_cast<int64_t>(ids.size());
    CachedSequence sequence(m->new_cache(static_cast<int64_t>(ids.size()) + std::min(room, options.max_new_tokens)));
    // A long prompt goes in chunks, with its progress and speed on stderr; a short one in one step.
    const bool long_prompt = static_cast<int64_t>(ids.size()) > kLongPromptTokens;
    ProgressBar bar("prompt");
    if (long_prompt) options.on_prompt_progress = prompt_progress(bar, std::chrono::steady_clock::now());
    TokenCallback stream;
    if (!json)
      stream = [](int32_t, std::string_view text) {
        std::cout << text << std::flush;
        return true;
      };
    Decoding decode(*m, sequence, ids, options, long_prompt ? kLongPromptTokens / 2 : 0);
    ModelContext model_context;
    while (!decode.done()) decode.step(model_context, pool, stream);
    const GenerateResult& result = decode.result();
    if (json) {
      nlohmann::json out = {{"prompt_ids", ids}, {"tokens", result.tokens}, {"text", result.text}};
      std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << "\n";
    }
    const double n = static_cast<double>(result.tokens.size()), p = static_cast<double>(ids.size());
    std::cerr << strprintf("prompt: %zu tokens in %.3f s (%.1f tokens/s); generated %zu tokens in %.3f s (%.1f tokens/s)",
                           ids.size(), result.prompt_seconds, p / std::max(result.prompt_seconds, 1e-9),
                           result.tokens.size(), result.generate_seconds, n / std::max(result.generate_seconds, 1e-9))
              << "; finish: " << finish_reason_name(result.finish_reason) << "\n";
    return 0;
  }
};

}  // namespace

Run add_generate(CLI::App& app) {
  auto cmd = std::make_shared<GenerateCommand>();
  cmd->model.add(app);
  cmd->model.add_lora(app);
  cmd->prompt.add(app);
  cmd->decoding.add(app, "Tokens to generate", "Stop");
  app.add_option("-c,--ctx", cmd->ctx, "Context size in tokens (default: max(model_max_length, 4096))")
      ->check(at_least(1));
  app.add_flag("--json", cmd->json, "Print one JSON line {prompt_ids, tokens, text}");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
