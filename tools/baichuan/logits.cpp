// baichuan logits: one forward pass of the prompt, the last position's logits as float32 LE.
#include <iostream>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"

namespace baichuan::cli {

Run add_logits(CLI::App& app) {
  struct Command {
    ModelOptions model;
    PromptOptions prompt;
    std::string out;
    int64_t ctx = 0;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  cmd->model.add_lora(app);
  cmd->prompt.add(app);
  app.add_option("-o,--output", cmd->out, "Output file (float32 little-endian, vocab_size values)")->required();
  app.add_option("-c,--ctx", cmd->ctx, "Context size in tokens (default: max(model_max_length, 4096))")
      ->check(at_least(1));
  return [cmd] {
    cmd->model.check_output(cmd->out);
    auto m = cmd->model.load();
    auto ids = cmd->prompt.ids(*m);
    checked_context(*m, cmd->ctx, ids.size());
    ThreadPool pool(cmd->model.thread_count());
    KvCache cache = m->new_cache(static_cast<int64_t>(ids.size()));
    auto logits = m->forward_last(cache, ids, pool);
    AtomicFile file(cmd->out);
    file.write(logits.data(), logits.size() * sizeof(float));
    file.commit();
    std::cerr << "wrote " << logits.size() << " logits of position " << ids.size() - 1 << " to " << cmd->out << "\n";
    return 0;
  };
}

}  // namespace baichuan::cli
