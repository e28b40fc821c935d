// baichuan generate: continue a prompt (or answer a conversation) and print the text as it comes.
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "generate/generator.h"

namespace baichuan::cli {

namespace {

struct GenerateCommand {
  ModelOptions model;
  PromptOptions prompt;
  SamplingOptions sampling;
  int64_t n_predict = -1;
  int64_t ctx = 0;
  bool ignore_eos = false, json = false;
  std::vector<std::string> stop;

  int run() {
    auto m = model.load();
    auto ids = prompt.ids(*m);
    GenerateOptions options;
    options.max_new_tokens = n_predict >= 0 ? n_predict : m->generation().max_new_tokens;
    options.ignore_eos = ignore_eos;
    options.sampling = sampling.params(m->generation());
    options.stop = stop;
    int64_t context = checked_context(*m, ctx, ids.size());
    ThreadPool pool(model.thread_count());
    Generator generator(*m, pool, std::min<int64_t>(context, static_cast<int64_t>(ids.size()) + options.max_new_tokens));
    TokenCallback stream;
    if (!json)
      stream = [](int32_t, std::string_view text) {
        std::cout << text << std::flush;
        return true;
      };
    auto result = generator.generate(ids, options, stream);
    if (json) {
      nlohmann::json out = {{"prompt_ids", ids}, {"tokens", result.tokens}, {"text", result.text}};
      std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << "\n";
    }
    auto n = static_cast<double>(result.tokens.size());
    std::cerr << "prompt: " << ids.size() << " tokens in " << result.prompt_seconds << " s ("
              << static_cast<double>(ids.size()) / std::max(result.prompt_seconds, 1e-9) << " tokens/s); generated "
              << result.tokens.size() << " tokens in " << result.generate_seconds << " s ("
              << n / std::max(result.generate_seconds, 1e-9) << " tokens/s); finish: " << result.finish_reason << "\n";
    return 0;
  }
};

}  // namespace

Run add_generate(CLI::App& app) {
  auto cmd = std::make_shared<GenerateCommand>();
  cmd->model.add(app);
  cmd->prompt.add(app);
  cmd->sampling.add(app);
  app.add_option("-n,--n-predict,--max-new-tokens", cmd->n_predict,
                 "Tokens to generate (default: generation_config.json max_new_tokens)");
  app.add_option("-c,--ctx", cmd->ctx, "Context size in tokens (default: max(model_max_length, 4096))");
  app.add_flag("--ignore-eos", cmd->ignore_eos, "Keep generating after the end-of-sequence token");
  app.add_flag("--json", cmd->json, "Print one JSON line {prompt_ids, tokens, text}");
  app.add_option("--stop", cmd->stop, "Stop when the text contains this string (repeatable)");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
