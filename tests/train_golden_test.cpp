// One training step on the tiny reference checkpoints against the golden step of the official
// PyTorch code (reference/train/*-step): the loss, every gradient, every parameter after AdamW,
// through the library and through `baichuan finetune --one-step`.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

#include "cli_runner.h"
#include "core/json_file.h"
#include "formats/safetensors.h"
#include "golden.h"
#include "shared_data.h"
#include "train/step_file.h"
#include "train/trainer.h"

namespace baichuan::train {
namespace train_golden_test {  // named, not anonymous: the tests compile as a unity build

using testing::shared_path;

struct Golden {
  std::string checkpoint, step_json, step_tensors;
};

Golden golden(const std::string& name) {
  return {shared_path("reference/" + name), shared_path("reference/train/" + name + "-step/train_step.json"),
          shared_path("reference/train/" + name + "-step/train_step.safetensors")};
}

std::map<std::string, Tensor> by_name(std::vector<Tensor> tensors) {
  std::map<std::string, Tensor> out;
  for (auto& t : tensors) out[t.name] = std::move(t);
  return out;
}

const float* f32(const Tensor& t) { return reinterpret_cast<const float*>(t.data); }

struct Agreement {
  double loss_rel = 0, worst_grad = 0, worst_param = 0;
  std::string worst_grad_name, worst_param_name;
};

// Compares a dump (full tensors, name -> data) with the golden tensors: max |ours - golden| over max
// |golden| per tensor; vocabulary-sized tensors only on the golden's kept rows.
Agreement compare(const Golden& g, const std::function<const float*(const std::string&)>& ours, int64_t hidden) {
  const nlohmann::json step = read_json_file(g.step_json);
  const std::vector<int64_t> kept = step["vocab_rows_kept"].get<std::vector<int64_t>>();
  auto reference = by_name(formats::read_safetensors(g.step_tensors));
  Agreement a;
  for (const auto& [name, ref] : reference) {
    const float* mine = ours(name);
    if (mine == nullptr) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    const bool vocab = name.ends_with("embed_tokens.weight") || name.ends_with("lm_head.weight");
    const std::vector<float> want(f32(ref), f32(ref) + ref.numel());
    std::vector<float> got(want.size());
    for (int64_t i = 0; i < ref.numel(); ++i)
      got[static_cast<size_t>(i)] = mine[vocab ? kept[static_cast<size_t>(i / hidden)] * hidden + i % hidden : i];
    const double rel = testing::max_relative_error(got, want);
    const bool is_grad = name.starts_with("grad.");
    EXPECT_LT(rel, is_grad ? 1e-4 : 1e-5) << name;
    double& worst = is_grad ? a.worst_grad : a.worst_param;
    if (rel > worst) {
      worst = rel;
      (is_grad ? a.worst_grad_name : a.worst_param_name) = name;
    }
  }
  return a;
}

void report(const std::string& what, const Agreement& a) {
  std::cout << what << ": loss rel err " << a.loss_rel << ", worst gradient " << a.worst_grad << " ("
            << a.worst_grad_name << "), worst parameter " << a.worst_param << " (" << a.worst_param_name << ")\n";
}

// With `padding` pad positions (id 0, label -100) appended to every record: by the official
// semantics (attention mask input_ids != 0, causal; labels -100 ignored) the step is the same, and
// those positions are not computed.
void check_library(const std::string& name, int64_t padding = 0) {
  const Golden g = golden(name);
  REQUIRE_SHARED(g.step_tensors);
  StepFile step = read_step_file(g.step_json);
  const auto length = static_cast<int64_t>(step.batch[0].input_ids.size());
  for (Record& r : step.batch) {
    r.input_ids.resize(static_cast<size_t>(length + padding), 0);
    r.labels.resize(static_cast<size_t>(length + padding), -100);
  }
  const Checkpoint checkpoint = open_checkpoint(g.checkpoint);
  TrainModel<float> model = load_train_model<float>(checkpoint);
  ThreadPool pool(2);
  AdamW<float> optimizer(model.params().size());
  TrainContext<float> ctx;
  const double loss = train_step(model, optimizer, ctx, {&step.batch, 1}, step.adamw, pool);
  const double golden_loss = read_json_file(g.step_json)["loss"].get<double>();
  auto ours = [&](const std::string& n) -> const float* {
    const bool grad = n.starts_with("grad.");
    const ParamInfo& p = model.info(n.substr(grad ? 5 : 11));
    return grad ? model.grad(p).data() : model.param(p).data();
  };
  Agreement a = compare(g, ours, model.shape().hidden);
  a.loss_rel = std::abs(loss - golden_loss) / std::abs(golden_loss);
  EXPECT_LT(a.loss_rel, 1e-5) << loss << " vs " << golden_loss;
  EXPECT_EQ(ctx.seq_len, length);
  report(name + " (library" + (padding ? ", padded" : "") + ")", a);
}

TEST(TrainGolden, RopeStepMatchesTheOfficialCode) { check_library("b2-7b-tiny"); }

TEST(TrainGolden, AlibiStepMatchesTheOfficialCode) { check_library("b2-13b-tiny"); }

TEST(TrainGolden, TrailingPaddingChangesNothing) {
  check_library("b2-7b-tiny", 16);
  check_library("b2-13b-tiny", 16);
}

// Runs the CLI contract and checks it against the golden step; returns the dump's bytes.
std::string check_cli(const std::string& name, const std::string& threads) {
  const Golden g = golden(name);
  const std::string dump = testing::temp_path("finetune", name + "-" + threads + ".safetensors");
  const auto run = testing::baichuan_cli("finetune -m " + testing::quote(g.checkpoint) + " --one-step " +
                                         testing::quote(g.step_json) + " --dump " + testing::quote(dump) +
                                         " -t " + threads);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  if (run.exit_code != 0) return "";
  const std::string out = run.out.substr(0, run.out.find_last_not_of('\n') + 1);
  const nlohmann::json last = parse_json(out.substr(out.find_last_of('\n') + 1), "finetune stdout");
  const double golden_loss = read_json_file(g.step_json)["loss"].get<double>();
  {
    auto dumped = by_name(formats::read_safetensors(dump));
    auto ours = [&](const std::string& n) -> const float* {
      auto it = dumped.find(n);
      return it == dumped.end() || it->second.dtype != DType::F32 ? nullptr : f32(it->second);
    };
    const int64_t hidden = dumped.at("after_step.model.norm.weight").shape[0];
    EXPECT_EQ(dumped.at("grad.lm_head.weight").shape[0], 125696) << "the dump holds full tensors";
    Agreement a = compare(g, ours, hidden);
    a.loss_rel = std::abs(last.at("loss").get<double>() - golden_loss) / std::abs(golden_loss);
    EXPECT_LT(a.loss_rel, 1e-5);
    report(name + " (CLI, -t " + threads + ")", a);
  }
  const std::string bytes = read_text_file(dump);
  std::filesystem::remove(dump);
  return bytes;
}

// The same weights through llama.cpp's GGUF (Q/K rows permuted) and MindSpore (W_pack split in three)
// load to the same float32 parameters, so the golden step holds for them too.
TEST(TrainGolden, EveryCheckpointFormatLoadsTheSameParameters) {
  const std::string hf = shared_path("reference/b2-7b-tiny");
  const std::string gguf = shared_path("reference/b2-7b-tiny-llamacpp/b2-7b-tiny-llamacpp-bf16.gguf");
  const std::string ms = shared_path("reference/b2-7b-tiny-mindspore/baichuan2_7b_tiny.ckpt");
  REQUIRE_SHARED(gguf);
  REQUIRE_SHARED(ms);
  const TrainModel<float> reference = load_train_model<float>(open_checkpoint(hf));
  for (const std::string& path : {gguf, ms}) {
    const TrainModel<float> other = load_train_model<float>(open_checkpoint(path));
    ASSERT_EQ(other.params().size(), reference.params().size());
    EXPECT_EQ(0, std::memcmp(other.params().data(), reference.params().data(),
                             reference.params().size() * sizeof(float)))
        << path;
  }
}

TEST(TrainGolden, FinetuneOneStepCliMatchesTheOfficialCode) {
  REQUIRE_SHARED(golden("b2-7b-tiny").step_tensors);
  REQUIRE_SHARED(golden("b2-13b-tiny").step_tensors);
  const std::string one_thread = check_cli("b2-7b-tiny", "1");
  EXPECT_TRUE(one_thread == check_cli("b2-7b-tiny", "2")) << "-t 1 and -t 2 wrote different dumps";
  check_cli("b2-13b-tiny", "2");
}

}  // namespace
}  // namespace baichuan::train
