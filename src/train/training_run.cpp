#include "train/training_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <type_traits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "train/data_order.h"
#include "train/loss_curve.h"
#include "train/trainer.h"

namespace baichuan::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCsvHeader = "step,loss,lr,grad_norm,tokens,seconds,eval_loss,eval_perplexity\n";

Record record_of(const TokenDataset& data, int64_t row) {
  const auto ids = data.input_ids(row), labels = data.labels(row);
  return {{ids.begin(), ids.end()}, {labels.begin(), labels.end()}};
}

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return text;
}

// The held-out rows and the training rows of a run.
struct RunData {
  TokenDataset train;
  std::optional<TokenDataset> eval_file;
  RowSplit split;
  const TokenDataset& eval() const { return eval_file ? *eval_file : train; }
};

RunData open_run_data(const TrainSettings& s) {
  RunData d{TokenDataset::open(s.data), std::nullopt, {}};
  if (!s.eval_data.empty()) {
    d.eval_file = TokenDataset::open(s.eval_data);
    d.split = split_rows(d.train.size(), 0, s.seed);
    for (int64_t i = 0; i < d.eval_file->size(); ++i) d.split.eval.push_back(i);
  } else {
    d.split = split_rows(d.train.size(), s.eval_split, s.seed);
  }
  return d;
}

}  // namespace

nlohmann::ordered_json TrainSettings::to_json() const {
  nlohmann::ordered_json j;
  j["data"] = data;
  j["eval_data"] = eval_data;
  j["epochs"] = epochs;
  j["max_steps"] = max_steps;
  j["batch"] = batch;
  j["grad_accum"] = grad_accum;
  j["ranks"] = ranks;
  j["schedule"] = schedule_kind_name(schedule);
  j["lr"] = lr;
  j["min_lr"] = min_lr;
  j["warmup"] = warmup;
  j["betas"] = {adamw.beta1, adamw.beta2};
  j["eps"] = adamw.eps;
  j["weight_decay"] = adamw.weight_decay;
  j["clip"] = clip;
  j["seed"] = seed;
  j["eval_split"] = eval_split;
  j["eval_every"] = eval_every;
  j["save_every"] = save_every;
  if (checkpoint_activations) j["checkpoint_activations"] = true;
  if (lora) {
    j["lora"] = lora->to_json();
    j["base_model"] = base_model;
  }
  return j;
}

TrainSettings TrainSettings::from_json(const nlohmann::json& j, const TrainSettings& base, const std::string& what) {
  TrainSettings s = base;
  try {
    auto get = [&](const char* key, auto& value) {
      if (j.contains(key)) value = j.at(key).get<std::decay_t<decltype(value)>>();
    };
    get("data", s.data);
    get("eval_data", s.eval_data);
    get("epochs", s.epochs);
    get("max_steps", s.max_steps);
    get("batch", s.batch);
    get("grad_accum", s.grad_accum);
    get("ranks", s.ranks);
    if (j.contains("schedule")) s.schedule = parse_schedule_kind(j.at("schedule").get<std::string>());
    get("lr", s.lr);
    get("min_lr", s.min_lr);
    get("warmup", s.warmup);
    if (j.contains("betas")) {
      s.adamw.beta1 = j.at("betas").at(0).get<double>();
      s.adamw.beta2 = j.at("betas").at(1).get<double>();
    }
    get("eps", s.adamw.eps);
    get("weight_decay", s.adamw.weight_decay);
    get("clip", s.clip);
    get("seed", s.seed);
    get("eval_split", s.eval_split);
    get("eval_every", s.eval_every);
    get("save_every", s.save_every);
    if (j.contains("lora")) s.lora = LoraSpec::from_json(j.at("lora"), what);
    get("base_model", s.base_model);
    get("checkpoint_activations", s.checkpoint_activations);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": settings: ", e.what());
  }
  return s;
}

void TrainSettings::validate() const {
  LrSchedule{schedule, lr, min_lr, warmup, 1}.validate();
  if (batch < 1) fail("--batch ", batch, ": must be at least 1");
  if (grad_accum < 1) fail("--grad-accum ", grad_accum, ": must be at least 1");
  if (ranks < 1) fail("ranks ", ranks, ": must be at least 1");
  if (max_steps < 0) fail("--max-steps ", max_steps, ": must not be negative");
  if (max_steps == 0 && epochs < 1) fail("--epochs ", epochs, ": must be at least 1");
  if (!(adamw.beta1 >= 0 && adamw.beta1 < 1) || !(adamw.beta2 >= 0 && adamw.beta2 < 1))
    fail("--betas ", adamw.beta1, ",", adamw.beta2, ": each must be in [0, 1)");
  if (!std::isfinite(adamw.eps) || adamw.eps <= 0) fail("--eps ", adamw.eps, ": must be a positive finite number");
  if (!std::isfinite(adamw.weight_decay) || adamw.weight_decay < 0)
    fail("--weight-decay ", adamw.weight_decay, ": must be a finite number >= 0");
  if (!std::isfinite(clip) || clip < 0) fail("--clip ", clip, ": must be a finite number >= 0 (0: no clipping)");
  if (eval_every < 0 || save_every < 0) fail("--eval-every and --save-every must not be negative");
  if (eval_split > 0 && !eval_data.empty()) fail("give --eval-split or --eval-data, not both");
}

void check_dataset_fits(const TokenDataset& data, const TrainShape& shape, int64_t context) {
  const int64_t positions = data.row_length() - (data.format() == DatasetFormat::MindRecord ? 1 : 0);
  if (positions > context)
    fail(data.path(), ": rows of ", positions, " tokens", data.format() == DatasetFormat::MindRecord ? " (seq_length)" : "",
         " are longer than the model's context of ", context, " (model_max_length); preprocess with --seq-length ",
         context, " or less");
  for (int64_t r = 0; r < data.size(); ++r) {
    const auto ids = data.input_ids(r), labels = data.labels(r);
    for (size_t t = 0; t < ids.size(); ++t) {
      if (ids[t] < 0 || ids[t] >= shape.vocab)
        fail(data.path(), ": record ", r, ": input_ids[", t, "] = ", ids[t], " is not a token id below the model's vocab_size ",
             shape.vocab, " (was the dataset made with another tokenizer?)");
      if (labels[t] != -100 && (labels[t] < 0 || labels[t] >= shape.vocab))
        fail(data.path(), ": record ", r, ": labels[", t, "] = ", labels[t], " is neither -100 nor a token id below the model's vocab_size ",
             shape.vocab, " (was the dataset made with another tokenizer?)");
    }
  }
}

template <typename Model>
double evaluate_loss(Model& model, TrainContext<float>& ctx, const TokenDataset& data, const std::vector<int64_t>& rows,
                     int64_t batch, ThreadPool& pool, const Communicator* ranks) {
  if constexpr (std::is_same_v<Model, LoraModel<float>>) model.disable_dropout();
  std::vector<Record> all;
  for (int64_t r : ranks ? rank_share(rows, ranks->rank(), ranks->size()) : rows) all.push_back(record_of(data, r));
  LossNorm norm = count_loss_tokens(all);
  if (ranks) norm = ranks->sum(norm);
  double loss = 0;
  for (size_t i = 0; i < all.size(); i += static_cast<size_t>(batch)) {
    const size_t n = std::min(all.size() - i, static_cast<size_t>(batch));
    loss += forward_loss(model, ctx, std::span<const Record>(all.data() + i, n), norm, pool);
  }
  return ranks ? ranks->sum(loss) : loss;
}

int64_t total_steps(const TrainSettings& s, int64_t train_rows) {
  if (s.max_steps > 0) return s.max_steps;
  const int64_t rows_per_step = s.batch * s.grad_accum * s.ranks;
  return (s.epochs * train_rows + rows_per_step - 1) / rows_per_step;
}

template <typename Model>
RunResult run_finetune(Model& model, AdamW<float>& optimizer, const TrainSettings& s,
                       const std::optional<LoadedCheckpoint>& resume, const RunOutputs& out, ThreadPool& pool,
                       const Communicator& ranks) {
  if (s.ranks != ranks.size()) fail("training: the settings are for ", s.ranks, " ranks but the job has ", ranks.size());
  const RunData data = open_run_data(s);
  const LrSchedule schedule{s.schedule, s.lr, s.min_lr, s.warmup, total_steps(s, static_cast<int64_t>(data.split.train.size()))};
  schedule.validate();
  CheckpointState state;
  state.seed = s.seed;
  state.settings = s.to_json();
  state.command_line = out.command_line;
  std::string csv = kCsvHeader;
  if (resume) {
    state.step = resume->state.step;
    state.epoch = resume->state.epoch;
    state.index = resume->state.index;
    state.tokens = resume->state.tokens;
    state.seconds = resume->state.seconds;
    csv = resume->csv_log;
  }
  DataCursor cursor(data.split.train, s.seed, state.epoch, state.index);
  // Data parallel: the ranks hold the same weights from the start and after every step (they apply
  // the same summed gradients); a checksum at the start and at each checkpoint proves it cheaply.
  auto check_ranks_agree = [&](const char* when) {
    if (!ranks.same_on_every_rank(parameter_checksum(model.params())))
      fail(when, ": the ranks hold different parameters (checksum ", parameter_checksum(model.params()), " on ",
           ranks.describe(), "); every rank must load the same checkpoint and data");
  };
  check_ranks_agree("before the first step");
  const auto log = [&](const std::string& line) {
    if (ranks.is_root()) out.log(line);
  };
  const std::string csv_path = (fs::path(out.out_dir) / "train_log.csv").string();
  std::ofstream csv_file;  // rank 0 alone writes the log and checkpoints
  if (ranks.is_root()) {
    fs::create_directories(out.out_dir);
    csv_file.open(csv_path, std::ios::trunc);
    csv_file << csv << std::flush;
    if (!csv_file) fail(csv_path, ": cannot write");
  }

  TrainContext<float> ctx;
  ctx.checkpoint_activations = s.checkpoint_activations;
  RunResult result;
  const auto start = std::chrono::steady_clock::now();
  const double seconds_before = state.seconds;
  const int64_t first_step = state.step + 1;
  int64_t session_tokens = 0;
  auto save = [&] {
    check_ranks_agree(("step " + std::to_string(state.step)).c_str());
    if (!ranks.is_root()) return;
    result.last_checkpoint = write_training_checkpoint(out.out_dir, state, model, optimizer, out.sources, csv);
    log("saved " + result.last_checkpoint);
    AtomicFile curve((fs::path(out.out_dir) / "loss.svg").string());  // redrawn with each checkpoint
    curve.write(loss_curve_svg(csv, csv_path));
    curve.commit();
  };
  for (int64_t step = first_step; step <= schedule.total_steps; ++step) {
    // The step's records of every rank, in the one seeded order; this rank trains on its share.
    std::vector<int64_t> step_rows(static_cast<size_t>(s.batch * s.grad_accum * s.ranks));
    for (int64_t& row : step_rows) row = cursor.next();
    const std::vector<int64_t> share = rank_share(step_rows, ranks.rank(), ranks.size());
    std::vector<std::vector<Record>> micro(static_cast<size_t>(s.grad_accum));
    for (size_t i = 0; i < share.size(); ++i) micro[i / static_cast<size_t>(s.batch)].push_back(record_of(data.train, share[i]));
    const auto step_tokens = static_cast<int64_t>(step_rows.size() * micro[0][0].input_ids.size());  // rows have one length
    AdamWConfig config = s.adamw;
    config.lr = schedule.at(step);
    const StepResult r = train_step_clipped(model, optimizer, ctx, micro, config, s.clip, pool, &ranks);
    state.step = step;
    state.epoch = cursor.epoch();
    state.index = cursor.index();
    state.tokens += step_tokens;
    session_tokens += step_tokens;
    const double session_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.seconds = seconds_before + session_seconds;
    result.last_loss = r.loss;
    result.tokens_per_second = static_cast<double>(session_tokens) / session_seconds;

    std::string eval_cells = ",";
    char line[512];
    if (!data.split.eval.empty() && ((s.eval_every > 0 && step % s.eval_every == 0) || step == schedule.total_steps)) {
      const double eval = evaluate_loss(model, ctx, data.eval(), data.split.eval, s.batch, pool, &ranks);
      result.last_eval_loss = eval;
      std::snprintf(line, sizeof line, "%.17g,%.17g", eval, std::exp(eval));
      eval_cells = line;
      std::snprintf(line, sizeof line, "step %lld: held-out loss %.4f, perplexity %.3f (%zu records)",
                    static_cast<long long>(step), eval, std::exp(eval), data.split.eval.size());
      log(line);
    }
    std::snprintf(line, sizeof line, "%lld,%.17g,%.17g,%.17g,%lld,%.3f,", static_cast<long long>(step), r.loss,
                  config.lr, r.grad_norm, static_cast<long long>(state.tokens), state.seconds);
    const std::string row = line + eval_cells + "\n";
    csv += row;
    if (ranks.is_root()) csv_file << row << std::flush;
    const double eta = session_seconds / static_cast<double>(step - first_step + 1) *
                       static_cast<double>(schedule.total_steps - step);
    std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tokens/s | ETA %s",
                  static_cast<long long>(step), static_cast<long long>(schedule.total_steps), r.loss, config.lr,
                  r.grad_norm, result.tokens_per_second, format_duration(eta).c_str());
    log(line);
    const bool stop = out.stop_after > 0 && step == out.stop_after;
    if ((s.save_every > 0 && step % s.save_every == 0) || step == schedule.total_steps || stop) save();
    if (stop) {
      log("stopped after step " + std::to_string(step) + " (--stop-after); continue with --resume");
      break;
    }
  }
  result.steps = state.step;
  if (first_step > schedule.total_steps) log("nothing to do: the checkpoint is at the last step already");
  return result;
}

template double evaluate_loss<TrainModel<float>>(TrainModel<float>&, TrainContext<float>&, const TokenDataset&,
                                                 const std::vector<int64_t>&, int64_t, ThreadPool&, const Communicator*);
template double evaluate_loss<LoraModel<float>>(LoraModel<float>&, TrainContext<float>&, const TokenDataset&,
                                                const std::vector<int64_t>&, int64_t, ThreadPool&, const Communicator*);
template RunResult run_finetune<TrainModel<float>>(TrainModel<float>&, AdamW<float>&, const TrainSettings&,
                                                   const std::optional<LoadedCheckpoint>&, const RunOutputs&,
                                                   ThreadPool&, const Communicator&);
template RunResult run_finetune<LoraModel<float>>(LoraModel<float>&, AdamW<float>&, const TrainSettings&,
                                                  const std::optional<LoadedCheckpoint>&, const RunOutputs&,
                                                  ThreadPool&, const Communicator&);

}  // namespace baichuan::train
