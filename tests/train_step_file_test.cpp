// AdamW against torch's algorithm over two steps, the step file reader and the dump writer.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli_runner.h"
#include "core/error.h"
#include "error_matchers.h"
#include "formats/safetensors.h"
#include "train/step_file.h"

namespace baichuan::train {
namespace train_step_file_test {  // named, not anonymous: the tests compile as a unity build

// Expected values from torch.optim.AdamW's update rule evaluated in float64 (lr 1e-2, betas
// (0.9, 0.98), eps 1e-8, weight_decay 0.1): the second step checks the bias corrections; the third
// parameter's gradient (1e-9, then 0) sits below eps.
TEST(TrainAdamW, FollowsTorchOverTwoSteps) {
  std::vector<float> p{0.5f, -1.0f, 0.02f};
  AdamW<float> adam(3);
  AdamWConfig c;
  c.lr = 1e-2;
  c.beta2 = 0.98;
  c.weight_decay = 0.1;
  ThreadPool pool(1);
  const std::vector<float> g1{0.1f, -0.001f, 1e-9f}, g2{-0.2f, 0.003f, 0.0f};
  adam.step(p, g1, c, pool);
  EXPECT_NEAR(p[0], 0.4895000009999999, 1e-7);
  EXPECT_NEAR(p[1], -0.989000099999, 1e-7);
  EXPECT_NEAR(p[2], 0.019070909090909093, 1e-7);
  adam.step(p, g2, c, pool);
  EXPECT_NEAR(p[0], 0.49266103989854143, 1e-7);
  EXPECT_NEAR(p[1], -0.9929341140467433, 1e-7);
  EXPECT_NEAR(p[2], 0.01860928851202122, 1e-7);
  EXPECT_EQ(adam.steps(), 2);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = testing::temp_path("step_file", name);
  std::ofstream(path) << text;
  return path;
}

TEST(TrainStepFile, ReadsTheGoldenLayout) {
  const std::string path = write_temp("ok.json", R"({"checkpoint": "x", "loss": 1.5,
      "batch": [{"id": "a", "input_ids": [195, 5, 0], "labels": [2, -100, -100]}],
      "adamw": {"lr": 0.001, "betas": [0.9, 0.98], "eps": 1e-08, "weight_decay": 0.0001}})");
  const StepFile step = read_step_file(path);
  ASSERT_EQ(step.batch.size(), 1u);
  EXPECT_EQ(step.batch[0].input_ids, (std::vector<int32_t>{195, 5, 0}));
  EXPECT_EQ(step.batch[0].labels, (std::vector<int32_t>{2, -100, -100}));
  EXPECT_EQ(step.adamw.lr, 0.001);
  EXPECT_EQ(step.adamw.beta2, 0.98);
  EXPECT_EQ(step.adamw.weight_decay, 0.0001);
  std::filesystem::remove(path);
}

TEST(TrainStepFile, NamesTheFieldThatIsWrong) {
  auto message = [](const std::string& text) {
    const std::string path = write_temp("bad.json", text);
    const std::string what = baichuan::testing::error_message_of([&] { read_step_file(path); });
    std::filesystem::remove(path);
    return what;
  };
  const std::string adamw = R"("adamw": {"lr": 0.001, "betas": [0.9, 0.98], "eps": 1e-08, "weight_decay": 0})";
  EXPECT_NE(message("{" + adamw + "}").find("missing field 'batch'"), std::string::npos);
  EXPECT_NE(message(R"({"batch": [{"input_ids": [1, "x"], "labels": [1, 2]}], )" + adamw + "}").find("batch[0].input_ids[1]"),
            std::string::npos);
  EXPECT_NE(message(R"({"batch": [{"input_ids": [1, 2]}], )" + adamw + "}").find("missing field 'labels'"),
            std::string::npos);
  EXPECT_NE(message(R"({"batch": [{"input_ids": [1], "labels": [1]}], "adamw": {"lr": 1, "betas": [0.9], "eps": 1, "weight_decay": 0}})")
                .find("adamw.betas"),
            std::string::npos);
}

TEST(TrainStepFile, DumpHoldsGradientsAndWeightsUnderOfficialNames) {
  TrainShape s;
  s.vocab = 7;
  s.hidden = 4;
  s.ffn = 6;
  s.heads = 2;
  s.layers = 1;
  TrainModel<float> model(s);
  randomize(model, 1, 0.1);
  for (size_t i = 0; i < model.grads().size(); ++i) model.grads()[i] = static_cast<float>(i);
  const std::string path = testing::temp_path("step_file", "dump.safetensors");
  write_step_dump(path, model);
  std::map<std::string, Tensor> read;
  for (auto& t : formats::read_safetensors(path)) read[t.name] = t;
  EXPECT_EQ(read.size(), 2 * model.layout().size());
  const Tensor& w_pack = read.at("after_step.model.layers.0.self_attn.W_pack.weight");
  EXPECT_EQ(w_pack.dtype, DType::F32);
  EXPECT_EQ(w_pack.shape, (std::vector<int64_t>{12, 4}));
  const ParamInfo& p = model.info("model.layers.0.self_attn.W_pack.weight");
  EXPECT_EQ(0, std::memcmp(w_pack.data, model.param(p).data(), p.numel * sizeof(float)));
  const Tensor& g = read.at("grad.lm_head.weight");
  EXPECT_EQ(reinterpret_cast<const float*>(g.data)[3], static_cast<float>(model.info("lm_head.weight").offset + 3));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace baichuan::train
