// baichuan finetune: training on the CPU. This first slice runs exactly one AdamW step on the batch
// of a step file (--one-step), for checking against the official code's golden step.
#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "train/step_file.h"
#include "train/trainer.h"

namespace baichuan::cli {

Run add_finetune(CLI::App& app) {
  struct Command {
    std::string model, config, tokenizer, position, one_step, dump;
    int threads = 0;
  };
  auto cmd = std::make_shared<Command>();
  app.add_option("-m,--model", cmd->model, "Checkpoint: Hugging Face folder, MindSpore .ckpt, or .gguf")->required();
  app.add_option("--config", cmd->config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", cmd->position, "Force the position scheme: rope (7B family) or alibi (13B family)")
      ->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("-t,--threads", cmd->threads, "Threads (default: all hardware threads)")->check(CLI::NonNegativeNumber);
  app.add_option("--one-step", cmd->one_step,
                 "Step file (JSON: batch of {input_ids, labels}, adamw {lr, betas, eps, weight_decay}): run one "
                 "AdamW step on it")
      ->required();
  app.add_option("--dump", cmd->dump, "Write grad.<name> and after_step.<name> of every parameter (F32 safetensors)");
  return [cmd] {
    LoadOptions options;
    if (!cmd->config.empty()) options.config_path = cmd->config;
    if (!cmd->tokenizer.empty()) options.tokenizer_path = cmd->tokenizer;
    if (!cmd->position.empty()) options.position = parse_position_encoding(cmd->position);
    const train::StepFile step = train::read_step_file(cmd->one_step);  // before loading: a typo costs nothing
    const Checkpoint checkpoint = open_checkpoint(cmd->model, options);
    auto model = train::load_train_model<float>(checkpoint);
    const auto& s = model.shape();
    const int threads = cmd->threads > 0 ? cmd->threads : ThreadPool::default_threads();
    std::cerr << "loaded " << cmd->model << " (" << checkpoint.description << ") as float32 for training: Baichuan 2 "
              << checkpoint.config.family() << ", " << model.params().size() << " parameters, z_loss_weight "
              << s.z_loss_weight << ", " << threads << " threads\n";

    ThreadPool pool(threads);
    train::AdamW<float> optimizer(model.params().size());
    train::TrainContext<float> ctx;
    const auto start = std::chrono::steady_clock::now();
    const double loss = train::train_step(model, optimizer, ctx, {&step.batch, 1}, step.adamw, pool);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const size_t tokens = step.batch.size() * step.batch[0].input_ids.size();
    std::cerr << "step 1: loss " << loss << ", " << step.batch.size() << " records x " << step.batch[0].input_ids.size()
              << " tokens in " << secs << " s (" << static_cast<double>(tokens) / secs << " tokens/s)\n";
    if (!cmd->dump.empty()) {
      train::write_step_dump(cmd->dump, model);
      std::cerr << "wrote gradients and updated weights of " << model.layout().size() << " parameters to "
                << cmd->dump << "\n";
    }
    std::cout << nlohmann::json{{"loss", loss}}.dump() << "\n";
    return 0;
  };
}

}  // namespace baichuan::cli
