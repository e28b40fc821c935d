// The evaluator on the reference checkpoints: the multiple-choice scorer picks the letter the golden
// logits of the official code imply (and reusing the shots' KV cache changes nothing); every task runs
// end to end through `baichuan eval` on ../shared/data/eval; the report's averages, JSON round trip,
// --compare and --plot.
#include "error_matchers.h"
#include "eval/evaluation.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/choice_scorer.h"
#include "eval/prompts.h"
#include "eval/report.h"
#include "golden.h"
#include "model/model.h"
#include "shared_data.h"

namespace baichuan {
namespace eval_run_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using baichuan::testing::throws_error;
using nlohmann::json;
using testing::baichuan_cli;
using testing::CliRun;
using testing::quote;
using testing::shared_path;

std::string temp(const std::string& name) { return testing::temp_path("evalrun", name); }

class ScorerOnReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ScorerOnReference, PicksTheLetterTheGoldenLogitsImply) {
  const std::string dir = shared_path("reference/" + GetParam());
  REQUIRE_SHARED(testing::golden_json_path(dir));
  const json golden = testing::read_golden(dir);
  auto model = load_model(dir);
  model->set_kv_type(DType::F32);
  ThreadPool pool(2);
  eval::ChoiceScorer scorer(*model, pool, 512);
  const auto ids = scorer.choice_ids();
  for (const auto& p : golden["prompts"]) {
    const auto prompt = p["ids"].get<std::vector<int32_t>>();
    const auto logits = testing::golden_last_logits(dir, p);
    ASSERT_EQ(logits.size(), static_cast<size_t>(model->config().vocab_size));
    const char expected = eval::choose_letter(logits.data(), ids);
    const eval::Choice c = scorer.score(prompt);
    EXPECT_EQ(c.letter, expected) << p["text"];
    float scale = 0;
    for (float v : logits) scale = std::max(scale, std::abs(v));
    for (size_t k = 0; k < 4; ++k)
      EXPECT_NEAR(c.logits[k], logits[static_cast<size_t>(ids[k])], 1e-4 * scale) << p["text"] << " letter " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, ScorerOnReference, ::testing::Values("b2-7b-tiny", "b2-13b-tiny"));

TEST(ChoiceScorer, ReusingTheSharedPrefixGivesTheSameLogitsAsAFreshPass) {
  const std::string dir = shared_path("reference/b2-7b-tiny");
  REQUIRE_SHARED(dir + "/config.json");
  auto model = load_model(dir);
  model->set_kv_type(DType::F32);
  ThreadPool pool(2);
  const auto& tok = model->tokenizer();
  const std::string shots = "以下是中国关于法学考试的单项选择题，请选出其中的正确答案。\n\n甲\nA. 1\nB. 2\nC. 3\nD. 4\n答案：B";
  const auto first = tok.encode(shots + "\n乙\nA. 5\nB. 6\nC. 7\nD. 8\n答案：");
  const auto second = tok.encode(shots + "\n丙丁\nA. x\nB. y\nC. z\nD. w\n答案：");
  eval::ChoiceScorer shared(*model, pool, 256), fresh(*model, pool, 256);
  shared.score(first);
  const eval::Choice reused = shared.score(second);
  EXPECT_GT(reused.reused_tokens, 20);
  const eval::Choice alone = fresh.score(second);
  EXPECT_EQ(alone.reused_tokens, 0);
  for (size_t k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(reused.logits[k], alone.logits[k]);
  // The same prompt twice: everything but the last token is reused.
  EXPECT_EQ(shared.score(second).reused_tokens, static_cast<int64_t>(second.size()) - 1);
  EXPECT_THROW(shared.score(std::vector<int32_t>(257, 1)), Error);
  EXPECT_THROW(shared.score({}), Error);
}

// The prompt of every item round-trips through --json; a file written before prompts were recorded
// still loads (and writes back unchanged); text that is not UTF-8 does not fail the write.
TEST(EvalReport, PromptRoundTripsAndOlderFilesWithoutItLoad) {
  eval::EvalReport r;
  r.task = "ceval";
  r.subjects = {{"a", "甲", "STEM", 0, 1, 0}};
  eval::ItemRecord item;
  item.subject = "a";
  item.id = "0";
  item.target = "A";
  item.prediction = "B";
  item.prompt = "以下是中国关于甲考试的单项选择题，请选出其中的正确答案。\n\n问\nA. 1\nB. 2\nC. 3\nD. 4\n答案：";
  r.items = {item};
  const json j = json::parse(eval::report_json_text(r));
  EXPECT_EQ(j["items"][0]["prompt"], item.prompt);
  EXPECT_EQ(eval::report_from_json(j, "x.json").items.at(0).prompt, item.prompt);

  json old = j;
  old["items"][0].erase("prompt");
  const eval::EvalReport back = eval::report_from_json(old, "old.json");
  EXPECT_EQ(back.items.at(0).prompt, "");
  EXPECT_EQ(eval::to_json(back), old);

  json wrong = j;
  wrong["items"][0]["prompt"] = 7;
  EXPECT_THAT([&] { eval::report_from_json(wrong, "x.json"); },
              throws_error("x.json: items[0]: field 'prompt' has the wrong type"));

  r.items[0].prompt = "caf\xE9 \xFF";  // Latin-1 bytes from a benchmark file in another encoding
  EXPECT_EQ(json::parse(eval::report_json_text(r))["items"][0]["prompt"], "caf\uFFFD \uFFFD");
}

TEST(EvalReport, AveragesAsEachBenchmarkDefinesThem) {
  eval::EvalReport r;
  r.task = "mmlu";
  r.subjects = {{"a", "a", "", 1, 1, 0}, {"b", "b", "", 0, 3, 0}};
  EXPECT_DOUBLE_EQ(eval::benchmark_averages(r)[0].accuracy, 0.25);  // over questions: 1 of 4
  r.task = "ceval";
  r.subjects = {{"c", "丙", "Other", 1, 2, 0}, {"a", "甲", "STEM", 1, 1, 0}, {"b", "乙", "STEM", 0, 3, 0}};
  const auto av = eval::benchmark_averages(r);
  ASSERT_EQ(av.size(), 3u);
  EXPECT_EQ(av[0].name, "Average");
  EXPECT_DOUBLE_EQ(av[0].accuracy, (1.0 + 0.0 + 0.5) / 3);  // over subjects
  EXPECT_EQ(av[1].name, "STEM");  // C-Eval's order, not the data's
  EXPECT_DOUBLE_EQ(av[1].accuracy, 0.5);
  EXPECT_EQ(av[2].name, "Other");
  EXPECT_DOUBLE_EQ(av[2].accuracy, 0.5);
  eval::ItemRecord item;
  item.subject = "a";
  item.id = "7";
  item.target = "B";
  item.prediction = "C";
  item.logits = {1, 2, 3, -4};
  r.items = {item};
  r.choice_ids = {65, 66, 67, 68};
  const auto back = eval::report_from_json(json::parse(eval::to_json(r).dump()), "x.json");
  EXPECT_EQ(eval::to_json(back), eval::to_json(r));
  json broken = eval::to_json(r);
  broken["items"][0].erase("prediction");
  EXPECT_THAT([&] { eval::report_from_json(broken, "x.json"); },
              throws_error("x.json: items[0]: missing field 'prediction'"));
}

// Every task through the CLI on the real data samples with the tiny 7B reference (random weights, so
// the accuracy is about chance: the point is the machinery).
class EvalCli : public ::testing::TestWithParam<std::string> {};

TEST_P(EvalCli, RunsEndToEndOnTheDataSamples) {
  const std::string task = GetParam();
  const std::string model = shared_path("reference/b2-7b-tiny");
  const std::string data = shared_path("data/eval/" + task);
  REQUIRE_SHARED(model + "/config.json");
  REQUIRE_SHARED(data + "/SOURCES.md");
  const std::string out = temp(task + ".json"), svg = temp(task + ".svg");
  // BBH generates up to 512 tokens per item: one item of one task.
  const std::string limit = task == "bbh" ? "--limit 1 --subjects navigate" : "--limit 3";
  CliRun r = baichuan_cli("eval -m " + quote(model) + " -t 2 --task " + task + " --data " + quote(data) + " " + limit +
                          " --json " + quote(out) + " --plot " + quote(svg));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Average"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("items/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("reused from the shared shots"), std::string::npos) << r.err;
  const json j = json::parse(read_text_file(out));
  EXPECT_EQ(j["task"], task);
  ASSERT_FALSE(j["items"].empty());
  int64_t items = 0;
  for (const auto& s : j["subjects"]) {
    EXPECT_LE(s["total"].get<int64_t>(), task == "bbh" ? 1 : 3);
    items += s["total"].get<int64_t>();
  }
  EXPECT_EQ(items, static_cast<int64_t>(j["items"].size()));
  // Every item after a subject's first shares the header and shots with the one before.
  if (task != "bbh") {
    EXPECT_GT(j["reused_tokens"].get<int64_t>(), 0);
  }
  for (const auto& i : j["items"]) {
    EXPECT_GT(i["prompt_tokens"].get<int64_t>(), 0);
    ASSERT_TRUE(i.contains("prompt") && i["prompt"].is_string()) << i;
    const std::string prompt = i["prompt"];
    const std::string end = task == "bbh"    ? "\nA: Let's think step by step."
                            : task == "mmlu"  ? "\nAnswer:"
                            : task == "cmmlu" ? "\n答案是："
                                              : "\n答案：";
    EXPECT_TRUE(prompt.ends_with(end)) << prompt;
    if (task != "bbh") {
      EXPECT_EQ(i["shots"], 5) << i;
      const std::string p = i["prediction"];
      ASSERT_EQ(p.size(), 1u);
      EXPECT_TRUE(p[0] >= 'A' && p[0] <= 'D');
      // The prediction is the letter with the highest of the four logits.
      const auto logits = i["logits"].get<std::vector<float>>();
      EXPECT_EQ(p[0] - 'A', std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
  }
  if (task == "ceval") {
    EXPECT_NE(r.out.find("STEM"), std::string::npos);
    EXPECT_NE(r.out.find("without a seed"), std::string::npos);
    EXPECT_EQ(j["choice_ids"].size(), 4u);
  }
  const std::string plot = read_text_file(svg);
  EXPECT_EQ(plot.rfind("<svg", 0), 0u);
  EXPECT_NE(plot.find("</svg>"), std::string::npos);

  // The run compared with itself: the same numbers, no differing prediction.
  CliRun c = baichuan_cli("eval --compare " + quote(out) + " " + quote(out));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.out.find(" 0 predictions differ"), std::string::npos) << c.out;
  fs::remove(out);
  fs::remove(svg);
}

INSTANTIATE_TEST_SUITE_P(Tasks, EvalCli, ::testing::Values("ceval", "mmlu", "cmmlu", "gaokao", "agieval", "bbh"));

// A context too small for 5 shots: shots are dropped from the end (MMLU's rule) and the JSON says how
// many each item got.
TEST(EvalCli, LongPromptsLoseShotsFromTheEnd) {
  const std::string model = shared_path("reference/b2-7b-tiny");
  const std::string data = shared_path("data/eval/mmlu");
  REQUIRE_SHARED(model + "/config.json");
  REQUIRE_SHARED(data + "/SOURCES.md");
  const std::string out = temp("short.json");
  CliRun r = baichuan_cli("eval -m " + quote(model) + " -t 2 --task mmlu --subjects anatomy --limit 2 --ctx 200 --data " +
                          quote(data) + " --json " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("given fewer shots"), std::string::npos) << r.out;
  const json j = json::parse(read_text_file(out));
  ASSERT_EQ(j["items"].size(), 2u);
  for (const auto& i : j["items"]) {
    EXPECT_LT(i["shots"].get<int64_t>(), 5) << i;
    EXPECT_LE(i["prompt_tokens"].get<int64_t>(), 200) << i;
  }
  fs::remove(out);
}

// The JSON carries the exact prompt each item was scored on: here the one EvalPrompts.CevalComputerNetwork
// spells out by hand from the data (1 shot, the first val item).
TEST(EvalCli, JsonCarriesEachItemsExactPrompt) {
  const std::string model = shared_path("reference/b2-7b-tiny");
  const std::string data = shared_path("data/eval/ceval");
  REQUIRE_SHARED(model + "/config.json");
  REQUIRE_SHARED(data + "/SOURCES.md");
  const std::string out = temp("prompt.json");
  CliRun r = baichuan_cli("eval -m " + quote(model) + " -t 2 --task ceval --subjects computer_network --shots 1 "
                          "--limit 1 --data " + quote(data) + " --json " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(read_text_file(out));
  ASSERT_EQ(j["items"].size(), 1u);
  EXPECT_EQ(j["items"][0]["prompt"],
            "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n"
            "\n下列设备属于资源子网的是____。\nA. 计算机软件\nB. 网桥\nC. 交换机\nD. 路由器\n答案：A"
            "\n使用位填充方法，以01111110为位首flag，数据为011011111111111111110010，求问传送时要添加几个0____"
            "\nA. 1\nB. 2\nC. 3\nD. 4\n答案：");
  fs::remove(out);
}

// --max-new-tokens caps BBH's generation (greedy, so the shorter output is the start of the longer);
// the recorded prompt begins with OpenCompass's instruction line and ends with the item's question.
TEST(EvalCli, BbhMaxNewTokensCapsTheGeneration) {
  const std::string model = shared_path("reference/b2-7b-tiny");
  const std::string data = shared_path("data/eval/bbh");
  REQUIRE_SHARED(model + "/config.json");
  REQUIRE_SHARED(data + "/SOURCES.md");
  auto run = [&](int new_tokens) {
    const std::string out = temp("bbh" + std::to_string(new_tokens) + ".json");
    CliRun r = baichuan_cli("eval -m " + quote(model) + " -t 2 --task bbh --subjects navigate --limit 1 --data " +
                            quote(data) + " --max-new-tokens " + std::to_string(new_tokens) + " --json " + quote(out));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("EOS or " + std::to_string(new_tokens) + " tokens"), std::string::npos) << r.out;
    const json j = json::parse(read_text_file(out));
    fs::remove(out);
    return j;
  };
  const json four = run(4), twelve = run(12);
  const std::string a = four["items"].at(0)["output"], b = twelve["items"].at(0)["output"];
  EXPECT_FALSE(a.empty());
  EXPECT_LT(a.size(), b.size());
  EXPECT_TRUE(b.starts_with(a)) << a << " | " << b;

  const json examples = json::parse(read_text_file(data + "/bbh/navigate.json"))["examples"];
  const std::string prompt = four["items"].at(0)["prompt"];
  EXPECT_TRUE(prompt.starts_with("Follow the given examples and answer the question.\nGiven a series of navigation "
                                 "instructions, determine whether one would end up back at the starting point.\n\nQ: "))
      << prompt;
  EXPECT_TRUE(prompt.ends_with("\n\nQ: " + examples.at(0)["input"].get<std::string>() +
                               "\nA: Let's think step by step."))
      << prompt;
}

// GAOKAO data without Obj_Prompt.json: the files are chosen by their answers, and the output says so.
TEST(EvalCli, GaokaoWithoutObjPromptSaysHowFilesWereChosen) {
  const std::string model = shared_path("reference/b2-7b-tiny");
  const std::string sample = shared_path("data/eval/gaokao");
  REQUIRE_SHARED(model + "/config.json");
  REQUIRE_SHARED(sample + "/SOURCES.md");
  const std::string data = temp("gaokao_untyped");
  fs::create_directories(data + "/Objective_Questions");  // writable, unlike a copy of the read-only sample folder
  for (const auto& entry : fs::directory_iterator(sample + "/Objective_Questions"))
    fs::copy_file(entry.path(), data + "/Objective_Questions/" + entry.path().filename().string());
  CliRun r = baichuan_cli("eval -m " + quote(model) + " -t 2 --task gaokao --limit 1 --data " + quote(data));
  fs::remove_all(data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no Obj_Prompt.json to say which files are single-choice"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Geography"), std::string::npos) << r.out;  // 2-3 answers per item
  EXPECT_NE(r.out.find("2010-2022_Biology_MCQs"), std::string::npos) << r.out;
}

TEST(EvalCli, BadInputIsAClearError) {
  const std::string model = shared_path("reference/b2-7b-tiny");
  REQUIRE_SHARED(model + "/config.json");
  CliRun r = baichuan_cli("eval -m " + quote(model) + " --task nope --data /tmp");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown task 'nope'"), std::string::npos) << r.err;
  r = baichuan_cli("eval -m " + quote(model) + " --task ceval --data /nonexistent-dir");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent-dir"), std::string::npos) << r.err;
  r = baichuan_cli("eval -m " + quote(model) + " --task bbh --shots 5 --data " + quote(shared_path("data/eval/bbh")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("3-shot"), std::string::npos) << r.err;
  r = baichuan_cli("eval -m " + quote(model) + " --task bbh --max-new-tokens 0 --data " + quote(shared_path("data/eval/bbh")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--max-new-tokens must be >= 1, not 0"), std::string::npos) << r.err;
  r = baichuan_cli("eval -m " + quote(model) + " --task ceval --max-new-tokens 8 --data " +
                   quote(shared_path("data/eval/ceval")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--max-new-tokens is for bbh"), std::string::npos) << r.err;
  const std::string bad = temp("bad.json");
  std::ofstream(bad) << "{\"task\": \"ceval\"}";
  r = baichuan_cli("eval --compare " + quote(bad));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing field 'model'"), std::string::npos) << r.err;
  r = baichuan_cli("eval --compare " + quote(bad) + " -m " + quote(model) + " --lora adapter.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("-m, --lora, --task, --data and --json do not apply"), std::string::npos) << r.err;
  r = baichuan_cli("eval --task ceval");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("-m MODEL"), std::string::npos) << r.err;
  fs::remove(bad);
}

}  // namespace
}  // namespace baichuan
