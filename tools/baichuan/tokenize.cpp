// baichuan tokenize: the ids of a text or of a conversation under the official chat template.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"

namespace baichuan::cli {

Run add_tokenize(CLI::App& app) {
  struct Command {
    ModelOptions model;
    PromptOptions prompt;
    bool json = false;
  };
  auto cmd = std::make_shared<Command>();
  cmd->model.add(app);
  cmd->prompt.add(app);
  app.add_flag("--json", cmd->json, "Print one JSON line {\"ids\": [...]}");
  return [cmd] {
    auto m = cmd->model.load();
    auto ids = cmd->prompt.ids(*m);
    if (cmd->json) {
      std::cout << nlohmann::json({{"ids", ids}}).dump() << "\n";
    } else {
      for (int32_t id : ids)
        std::cout << id << "\t" << nlohmann::json(m->tokenizer().piece(id)).dump(-1, ' ', false,
                                                                                 nlohmann::json::error_handler_t::replace)
                  << "\n";
    }
    return 0;
  };
}

}  // namespace baichuan::cli
