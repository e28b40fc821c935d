// baichuan finetune: training on the CPU.
//   --data DATASET -o OUTDIR   full fine-tuning (train/training_run.h): checkpoints, resume, a Hugging
//                              Face folder (and --gguf TYPE) at the end; data parallel when started
//                              by `mpirun -np K` (train/data_parallel.h)
//   ... --lora [SPEC]          LoRA instead (train/lora.h): the base frozen, the adapters trained,
//                              checkpointed and written at the end; a quantized GGUF base keeps
//                              its layer matrices quantized (QLoRA, train/frozen_linear.h), while full
//                              fine-tuning dequantizes them to float32 (it trains them)
//   --one-step STEP.json       exactly one AdamW step on a step file, for the official golden step
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "convert/gguf_convert.h"
#include "convert/quant_mix.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/system_memory.h"
#include "model/checkpoint.h"
#include "model/gguf_checkpoint.h"
#include "train/checkpoint_dir.h"
#include "train/data_parallel.h"
#include "train/hf_export.h"
#include "train/lora_export.h"
#include "train/memory_plan.h"
#include "train/step_file.h"
#include "train/trainer.h"
#include "train/training_run.h"

namespace baichuan::cli {

namespace {

// The command line as the shell saw it (for the checkpoint manifest), from /proc/self/cmdline.
std::string finetune_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), out, arg;
  std::istringstream parts(all);
  while (std::getline(parts, arg, '\0')) {
    if (!out.empty()) out += ' ';
    out += arg.find_first_of(" '\"\\$") == std::string::npos ? arg : "'" + arg + "'";
  }
  return out;
}

struct FinetuneCommand {
  std::string model, config, tokenizer, position, one_step, dump;
  int threads = 0;
  // Full fine-tuning.
  std::string data, eval_data, out_dir, resume, schedule = "cosine", betas = "0.9,0.999", gguf, memory_limit;
  std::string lora_spec, max_shard_size;
  bool lora = false;  // --lora given (its value may be empty: the official defaults)
  bool checkpoint_activations = false;
  int64_t stop_after = 0, epochs = 1, max_steps = 0, batch = 1, grad_accum = 1, warmup = 0, eval_every = 0, save_every = 0;
  double lr = 1e-4, min_lr = 0, weight_decay = 0, eps = 1e-8, clip = 1.0, eval_split = 0;
  uint64_t seed = 42;
};

int finetune_one_step(const FinetuneCommand& cmd, const LoadOptions& options, int threads) {
  const train::StepFile step = train::read_step_file(cmd.one_step);  // before loading: a typo costs nothing
  const Checkpoint checkpoint = open_checkpoint(cmd.model, options);
  auto model = train::load_train_model<float>(checkpoint);
  const auto& s = model.shape();
  std::cerr << "loaded " << cmd.model << " (" << checkpoint.description << ") as float32 for training: Baichuan 2 "
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
  if (!cmd.dump.empty()) {
    train::write_step_dump(cmd.dump, model);
    std::cerr << "wrote gradients and updated weights of " << model.layout().size() << " parameters to " << cmd.dump
              << "\n";
  }
  std::cout << nlohmann::json{{"loss", loss}}.dump() << "\n";
  return 0;
}

// Writes OUTDIR/model (a Hugging Face folder) as a whole.
std::string export_finetuned_model(const std::string& out_dir, const train::TrainModel<float>& model,
                                   const train::HfFolderSources& sources) {
  const std::string final_dir = (std::filesystem::path(out_dir) / "model").string();
  train::replace_hf_folder(final_dir, model, sources);
  return final_dir;
}

train::RunOutputs finetune_run_outputs(const FinetuneCommand& cmd, const Checkpoint& checkpoint) {
  train::RunOutputs outputs;
  outputs.out_dir = cmd.out_dir;
  outputs.command_line = finetune_command_line();
  outputs.sources = {checkpoint.config, checkpoint.generation_json,
                     checkpoint.tokenizer ? checkpoint.tokenizer->model_bytes() : ""};
  if (!cmd.max_shard_size.empty())
    outputs.sources.max_shard_bytes = train::parse_byte_size(cmd.max_shard_size, "--max-shard-size");
  outputs.stop_after = cmd.stop_after;
  outputs.log = [](const std::string& line) { std::cerr << line << "\n" << std::flush; };
  return outputs;
}

void describe_data_parallel(std::ostream& say, const train::Communicator& ranks, const train::TrainSettings& settings,
                            int threads) {
  if (ranks.size() > 1)
    say << "data parallel: " << ranks.size() << " ranks (" << ranks.ranks_on_this_machine() << " on this machine, "
        << threads << " threads each); a step takes " << ranks.size() << " ranks x batch " << settings.batch
        << " x grad-accum " << settings.grad_accum << " = " << ranks.size() * settings.batch * settings.grad_accum
        << " records\n";
}

// LoRA: the base loaded frozen (no gradient buffer), the adapters trained.
int run_lora_finetune_command(const FinetuneCommand& cmd, const train::TrainSettings& settings,
                              const std::optional<std::string>& resume_dir, const Checkpoint& checkpoint,
                              const train::TokenDataset& probe, int threads, const train::Communicator& ranks) {
  std::ostream null_stream(nullptr);
  std::ostream& say = ranks.is_root() ? std::cerr : null_stream;
  auto base = train::load_frozen_base(checkpoint);
  train::LoraModel<float> lora(base, *settings.lora, settings.seed);
  train::AdamW<float> optimizer(lora.params().size());
  std::optional<train::LoadedCheckpoint> resumed;
  if (resume_dir) {
    resumed = train::read_training_checkpoint(*resume_dir, lora, optimizer);
    say << "resuming " << *resume_dir << " at step " << resumed->state.step << " (epoch "
        << resumed->state.epoch << ", record " << resumed->state.index << " of its order)\n";
  } else {
    lora.init();
  }
  say << "loaded " << settings.base_model << " (" << checkpoint.description << ") as a frozen base ("
      << (base.stored() ? "quantized matrices as stored, " + gibibytes(static_cast<double>(base.stored()->bytes())) +
                              ", the rest float32"
                        : std::string("float32"))
      << "): Baichuan 2 " << checkpoint.config.family() << ", " << gibibytes(static_cast<double>(base.weight_bytes()))
      << " of weights; LoRA " << settings.lora->describe()
      << ": " << lora.params().size() << " trainable parameters; data " << settings.data << " (" << probe.size()
      << " records of " << probe.row_length() << ", " << train::dataset_format_name(probe.format()) << "); "
      << threads << " threads\n";
  describe_data_parallel(say, ranks, settings, threads);
  const train::RunOutputs outputs = finetune_run_outputs(cmd, checkpoint);
  ThreadPool pool(threads);
  const train::RunResult result = train::run_finetune(lora, optimizer, settings, resumed, outputs, pool, ranks);
  if (!ranks.is_root()) return 0;
  const train::LoraOutputPaths written = train::write_lora_outputs(cmd.out_dir, lora, checkpoint.config, settings.base_model);
  std::cerr << "wrote the adapter to " << written.peft_dir << " (PEFT) and " << written.gguf << " (llama.cpp GGUF LoRA)\n";
  nlohmann::ordered_json summary{{"steps", result.steps},
                                 {"loss", result.last_loss},
                                 {"tokens_per_second", result.tokens_per_second},
                                 {"trainable_parameters", lora.params().size()},
                                 {"adapter", written.peft_dir},
                                 {"adapter_gguf", written.gguf}};
  if (result.last_eval_loss >= 0) summary["eval_loss"] = result.last_eval_loss;
  std::cout << summary.dump() << "\n";
  return 0;
}

// Refuses to resume a checkpoint of K ranks with another number of ranks unless the step still takes
// as many records (ranks x batch x grad-accum): the one data order then continues exactly. Returns
// whether the step takes as many records as the checkpoint's.
// The command-line option of a saved setting: its name with dashes; the base model is -m.
std::string finetune_option_of(const std::string& setting) {
  if (setting == "base_model") return "-m";
  std::string option = "--" + setting;
  std::replace(option.begin(), option.end(), '_', '-');
  return option;
}

bool check_resume_ranks(const std::string& dir, const nlohmann::json& saved, const train::TrainSettings& now) {
  const train::TrainSettings before = train::TrainSettings::from_json(saved, train::TrainSettings{}, dir);
  const int64_t rows_before = before.ranks * before.batch * before.grad_accum, rows_now = now.ranks * now.batch * now.grad_accum;
  if (before.ranks != now.ranks && rows_before != rows_now)
    fail("--resume ", dir, ": the checkpoint was trained by ", before.ranks, " rank(s) x --batch ", before.batch,
         " x --grad-accum ", before.grad_accum, " = ", rows_before, " records per step, this job of ", now.ranks,
         " rank(s) would take ", rows_now, ": resume with mpirun -np ", before.ranks,
         ", or give --batch / --grad-accum so that ranks x batch x grad-accum = ", rows_before);
  return rows_before == rows_now;
}

int run_full_finetune_command(CLI::App& app, const FinetuneCommand& cmd, const LoadOptions& options, int threads,
                              const train::Communicator& ranks) {
  // Rank 0 alone speaks (and writes); the other ranks of a data-parallel job train silently.
  std::ostream null_stream(nullptr);
  std::ostream& say = ranks.is_root() ? std::cerr : null_stream;
  if (cmd.out_dir.empty()) fail("--data needs -o OUTDIR (checkpoints, the log and the fine-tuned model go there)");
  if (cmd.model.empty() && cmd.resume.empty()) fail("give -m CHECKPOINT (or --resume DIR)");
  train::TrainSettings settings;
  std::optional<std::string> resume_dir;
  nlohmann::json given;  // the settings given on this command line
  {
    train::TrainSettings from_cmd;
    from_cmd.data = cmd.data;
    from_cmd.eval_data = cmd.eval_data;
    from_cmd.epochs = cmd.epochs;
    from_cmd.max_steps = cmd.max_steps;
    from_cmd.batch = cmd.batch;
    from_cmd.grad_accum = cmd.grad_accum;
    from_cmd.schedule = train::parse_schedule_kind(cmd.schedule);
    from_cmd.lr = cmd.lr;
    from_cmd.min_lr = cmd.min_lr;
    from_cmd.warmup = cmd.warmup;
    const auto comma = cmd.betas.find(',');
    try {
      if (comma == std::string::npos) throw std::invalid_argument("no comma");
      from_cmd.adamw.beta1 = std::stod(cmd.betas.substr(0, comma));
      from_cmd.adamw.beta2 = std::stod(cmd.betas.substr(comma + 1));
    } catch (const std::exception&) {
      fail("--betas '", cmd.betas, "': expected two numbers, e.g. 0.9,0.999");
    }
    from_cmd.adamw.eps = cmd.eps;
    from_cmd.adamw.weight_decay = cmd.weight_decay;
    from_cmd.clip = cmd.clip;
    from_cmd.seed = cmd.seed;
    from_cmd.eval_split = cmd.eval_split;
    from_cmd.eval_every = cmd.eval_every;
    from_cmd.save_every = cmd.save_every;
    from_cmd.checkpoint_activations = cmd.checkpoint_activations;
    if (cmd.lora) from_cmd.lora = train::LoraSpec::parse(cmd.lora_spec);
    if (!cmd.model.empty()) from_cmd.base_model = std::filesystem::absolute(cmd.model).string();
    const nlohmann::ordered_json all = from_cmd.to_json();
    for (const auto& [key, value] : all.items()) {
      const std::string option = finetune_option_of(key);
      if (app.get_option_no_throw(option) && app.get_option(option)->count() > 0) given[key] = value;
    }
    // -m names the base of a LoRA run, also when resuming one (a full run's checkpoint holds its weights).
    if (!cmd.model.empty()) given["base_model"] = from_cmd.base_model;
    settings = from_cmd;
  }
  std::string weights_path = cmd.model;
  std::optional<train::LoadedCheckpoint> resumed;
  nlohmann::json resume_settings;
  if (!cmd.resume.empty()) {
    resume_dir = train::find_training_checkpoint(cmd.resume);
    resume_settings = read_json_file((std::filesystem::path(*resume_dir) / train::kCheckpointManifest).string()).at("settings");
    // The run continues with its own settings; options given now replace them (and the curve then
    // differs from an uninterrupted run, except for the length of the run and how often it logs).
    settings = train::TrainSettings::from_json(resume_settings, train::TrainSettings{}, *resume_dir);
    settings = train::TrainSettings::from_json(given, settings, "the command line");
    settings.ranks = ranks.size();
    // Records per step as before (e.g. twice the batch on half the ranks): the same run, summed in another order.
    const bool same_step = check_resume_ranks(*resume_dir, resume_settings, settings);
    for (const auto& [key, value] : given.items())
      if (resume_settings.contains(key) && resume_settings[key] != value && key != "max_steps" && key != "epochs" &&
          key != "eval_every" && key != "save_every" && !(same_step && (key == "batch" || key == "grad_accum")))
        say << "warning: " << finetune_option_of(key) << " " << value.dump() << " replaces the checkpoint's " << resume_settings[key].dump()
            << ": the run will not match an uninterrupted one\n";
    weights_path = settings.lora ? settings.base_model : *resume_dir;  // a LoRA checkpoint holds only the adapter
  }
  settings.ranks = ranks.size();
  settings.validate();
  if (settings.lora && settings.base_model.empty()) fail("--lora needs -m BASE (the model whose adapters to train)");
  if (cmd.lora && !cmd.gguf.empty()) fail("--gguf writes a full model; with --lora the adapter goes to OUTDIR/adapter.gguf");
  const train::TokenDataset probe = train::TokenDataset::open(settings.data);  // before loading the weights

  const Checkpoint checkpoint = open_checkpoint(weights_path, resume_dir && !settings.lora ? LoadOptions{} : options);
  const auto& cfg = checkpoint.config;
  check_dataset_fits(probe, train::TrainShape::from(cfg), cfg.model_max_length);
  if (!settings.eval_data.empty())
    check_dataset_fits(train::TokenDataset::open(settings.eval_data), train::TrainShape::from(cfg), cfg.model_max_length);

  const train::TrainShape shape = train::TrainShape::from(cfg);
  const int64_t seq_len = probe.row_length();
  // A LoRA base keeps its quantized layer matrices as stored (QLoRA); full fine-tuning trains float32
  // weights, so it dequantizes them.
  const train::FrozenBaseSize frozen_base = settings.lora ? train::frozen_base_size(checkpoint) : train::FrozenBaseSize{};
  const train::MemoryPlan plan =
      settings.lora ? train::lora_memory_plan(shape, *settings.lora, settings.batch, seq_len,
                                              settings.checkpoint_activations, &frozen_base)
                    : train::full_finetune_memory_plan(shape, settings.batch, seq_len, settings.checkpoint_activations);
  const uint64_t limit =
      cmd.memory_limit.empty() ? physical_memory_bytes() : train::parse_byte_size(cmd.memory_limit, "--memory-limit");
  // The ranks on one machine share its memory.
  const uint64_t machine_total = plan.total() * static_cast<uint64_t>(ranks.ranks_on_this_machine());
  say << "memory plan (" << (settings.lora ? "LoRA " + settings.lora->describe() : std::string("full fine-tuning"))
      << ", float32, micro-batch " << settings.batch << " x " << seq_len << " tokens):\n"
      << plan.describe();
  if (ranks.ranks_on_this_machine() > 1)
    say << "  all ranks on this machine (" << ranks.ranks_on_this_machine() << ") "
        << gibibytes(static_cast<double>(machine_total)) << "\n";
  say << "  available                     " << (limit ? gibibytes(static_cast<double>(limit)) : std::string("unknown"))
      << "\n";
  if (limit && machine_total > limit)
    fail("the memory plan needs ", gibibytes(static_cast<double>(machine_total)), " but ",
         cmd.memory_limit.empty() ? "this machine has " : "--memory-limit is ", gibibytes(static_cast<double>(limit)),
         ":\n", plan.describe(), "use a smaller --batch (with --grad-accum for the same step), shorter rows, or a smaller model");

  if (settings.lora) return run_lora_finetune_command(cmd, settings, resume_dir, checkpoint, probe, threads, ranks);
  auto model = train::load_train_model<float>(checkpoint);
  train::AdamW<float> optimizer(model.params().size());
  if (resume_dir) {
    resumed = train::read_training_checkpoint(*resume_dir, model, optimizer);
    say << "resuming " << *resume_dir << " at step " << resumed->state.step << " (epoch "
        << resumed->state.epoch << ", record " << resumed->state.index << " of its order)\n";
  }
  say << "loaded " << weights_path << " (" << checkpoint.description << ") as float32: Baichuan 2 "
      << cfg.family() << ", " << model.params().size() << " parameters; data " << settings.data << " ("
      << probe.size() << " records of " << probe.row_length() << ", " << train::dataset_format_name(probe.format())
      << "); " << threads << " threads\n";
  describe_data_parallel(say, ranks, settings, threads);

  const train::RunOutputs outputs = finetune_run_outputs(cmd, checkpoint);
  ThreadPool pool(threads);
  const train::RunResult result = train::run_finetune(model, optimizer, settings, resumed, outputs, pool, ranks);
  if (!ranks.is_root()) return 0;
  const std::string hf = export_finetuned_model(cmd.out_dir, model, outputs.sources);
  std::cerr << "wrote the fine-tuned model to " << hf << " (Hugging Face folder, F32)\n";
  nlohmann::ordered_json summary{{"steps", result.steps},
                                 {"loss", result.last_loss},
                                 {"tokens_per_second", result.tokens_per_second},
                                 {"model", hf}};
  if (result.last_eval_loss >= 0) summary["eval_loss"] = result.last_eval_loss;
  if (!cmd.gguf.empty()) {
    ConvertOptions convert;
    const FileType type = parse_file_type(cmd.gguf);
    convert.type = type.base;
    convert.mix = type.mix;
    convert.normalize_head = true;  // llama.cpp has no NormHead: store the rows normalised
    convert.name = "Baichuan2-finetuned";
    convert.pool = &pool;
    const std::string gguf_path = (std::filesystem::path(cmd.out_dir) / ("model-" + cmd.gguf + ".gguf")).string();
    write_gguf_checkpoint(open_checkpoint(hf), gguf_path, convert);
    std::cerr << "wrote " << gguf_path << "\n";
    summary["gguf"] = gguf_path;
  }
  std::cout << summary.dump() << "\n";
  return 0;
}

}  // namespace

Run add_finetune(CLI::App& app) {
  auto cmd = std::make_shared<FinetuneCommand>();
  app.add_option("-m,--model", cmd->model, "Checkpoint: Hugging Face folder, MindSpore .ckpt, or .gguf");
  app.add_option("--config", cmd->config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", cmd->position, "Force the position scheme: rope (7B family) or alibi (13B family)")
      ->check(CLI::IsMember({"rope", "alibi"}));
  app.add_option("-t,--threads", cmd->threads, "Threads (default: all hardware threads)")->check(thread_count_check());
  auto* one_step = app.add_option("--one-step", cmd->one_step,
                                  "Step file (JSON: batch of {input_ids, labels}, adamw {lr, betas, eps, "
                                  "weight_decay}): run one AdamW step on it");
  app.add_option("--dump", cmd->dump, "With --one-step: write grad.<name> and after_step.<name> (F32 safetensors)");
  auto* data = app.add_option("--data", cmd->data, "Dataset from `baichuan preprocess` (tokens, json or MindRecord)");
  data->excludes(one_step);
  app.add_option("-o,--output", cmd->out_dir, "Output folder: checkpoints, train_log.csv, model/ at the end");
  auto* epochs = app.add_option("--epochs", cmd->epochs, "Passes over the training records (default 1)");
  app.add_option("--max-steps", cmd->max_steps, "Optimizer steps (instead of --epochs)")->excludes(epochs);
  app.add_option("--batch", cmd->batch, "Rows per micro-batch (default 1)");
  app.add_option("--grad-accum", cmd->grad_accum, "Micro-batches per optimizer step (default 1)");
  app.add_option("--lr", cmd->lr, "Peak learning rate (default 1e-4)");
  app.add_option("--min-lr", cmd->min_lr, "Floor the schedule decays to (default 0)");
  app.add_option("--schedule", cmd->schedule, "constant, linear or cosine (default), after --warmup");
  app.add_option("--warmup", cmd->warmup, "Steps of linear warm-up from 0 (default 0)");
  app.add_option("--weight-decay", cmd->weight_decay, "AdamW decoupled weight decay (default 0, as fine-tune.py)");
  app.add_option("--betas", cmd->betas, "AdamW betas (default 0.9,0.999)");
  app.add_option("--eps", cmd->eps, "AdamW eps (default 1e-8)");
  app.add_option("--clip", cmd->clip, "Clip gradients to this global L2 norm; 0 = off (default 1.0)");
  app.add_option("--seed", cmd->seed, "Seed of the shuffles and of the held-out split (default 42)");
  app.add_option("--eval-split", cmd->eval_split, "Hold out this fraction of the records for evaluation");
  app.add_option("--eval-data", cmd->eval_data, "Evaluate on this dataset instead");
  app.add_option("--eval-every", cmd->eval_every, "Evaluate every N steps (and at the end)");
  app.add_option("--save-every", cmd->save_every, "Write a checkpoint every N steps (and always at the end)");
  app.add_option("--resume", cmd->resume, "Continue from a checkpoint folder (or the newest one in an OUTDIR)");
  app.add_option("--gguf", cmd->gguf, "Also write OUTDIR/model-TYPE.gguf (f16, q8_0, q4_0, ...; head normalised)");
  app.add_option("--stop-after", cmd->stop_after,
                 "Checkpoint and stop after step N, as an interruption would (the schedule still ends at the last step)");
  app.add_option("--lora", cmd->lora_spec,
                 "LoRA instead of full fine-tuning: r=8,alpha=16,dropout=0.05,targets=W_pack,o_proj,...[,rslora=1]; "
                 "no value: fine-tune.py's W_pack, r 1, alpha 32, dropout 0.1")
      ->expected(0, 1);
  app.add_flag("--checkpoint-activations", cmd->checkpoint_activations,
               "Keep only each layer's input in the forward and recompute the layer in the backward: the same "
               "losses and gradients, activations of one layer instead of all");
  app.add_option("--max-shard-size", cmd->max_shard_size,
                 "Write the model's safetensors in shards of at most this size, with an index, as save_pretrained "
                 "(default 2G)");
  app.add_option("--memory-limit", cmd->memory_limit,
                 "Refuse a memory plan above this size (default: the machine's RAM), e.g. 8G");
  CLI::App* self = &app;
  return [cmd, self] {
    LoadOptions options;
    if (!cmd->config.empty()) options.config_path = cmd->config;
    if (!cmd->tokenizer.empty()) options.tokenizer_path = cmd->tokenizer;
    if (!cmd->position.empty()) options.position = parse_position_encoding(cmd->position);
    int threads = ThreadPool::threads_for_request(cmd->threads);
    cmd->lora = self->get_option("--lora")->count() > 0;
    if (!cmd->one_step.empty()) {
      if (cmd->model.empty()) fail("--one-step needs -m CHECKPOINT");
      if (cmd->lora) fail("--one-step runs a full fine-tuning step (the golden check); --lora does not apply to it");
      if (train::launched_world_size() > 1) fail("--one-step runs in one process: start it without mpirun");
      return finetune_one_step(*cmd, options, threads);
    }
    if (cmd->data.empty() && cmd->resume.empty()) fail("give --data DATASET -o OUTDIR (or --one-step STEP.json)");
    const auto ranks = train::Communicator::join_launched_job();
    if (ranks->size() == 1) return run_full_finetune_command(*self, *cmd, options, threads, *ranks);
    // The ranks on one machine share its cores.
    if (cmd->threads == 0) threads = std::max(1, threads / ranks->ranks_on_this_machine());
    ranks->explain_stop("stopped by mpirun: another rank failed or was killed (mpirun names it), or the job was "
                        "interrupted; the checkpoints in " + cmd->out_dir + " are complete (one being written is left "
                        "as a .tmp folder and ignored): continue with --resume " + cmd->out_dir);
    // An error on one rank ends the whole job: the others would otherwise wait for it forever.
    try {
      return run_full_finetune_command(*self, *cmd, options, threads, *ranks);
    } catch (const std::bad_alloc&) {
      ranks->abort_job("out of memory");
    } catch (const std::exception& e) {
      ranks->abort_job(e.what());
    }
  };
}

}  // namespace baichuan::cli
