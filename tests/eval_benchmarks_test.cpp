#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "eval/bbh.h"
#include "eval/benchmarks.h"
#include "shared_data.h"
#include "test_files.h"

using namespace baichuan::eval;
using baichuan::testing::shared_path;

namespace eval_benchmarks_test {  // named, not anonymous: the tests compile as a unity build

std::map<std::string, std::pair<size_t, size_t>> counts(const std::vector<Subject>& subjects) {
  std::map<std::string, std::pair<size_t, size_t>> out;
  for (const auto& s : subjects) out[s.name] = {s.shots.size(), s.items.size()};
  return out;
}

// A scratch directory with the given files, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = baichuan::testing::temp_path("eval_benchmarks", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
  }
};

using baichuan::testing::error_message_of;

// Row counts below were taken with Python's csv / json modules (header rows not counted).
TEST(EvalBenchmarks, CevalParsesAll) {
  const std::string dir = shared_path("data/eval/ceval");
  REQUIRE_SHARED(dir);
  auto subjects = read_ceval(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {
      {"accountant", {5, 49}}, {"art_studies", {5, 33}}, {"computer_network", {5, 19}},
      {"high_school_chinese", {5, 19}}, {"high_school_physics", {5, 19}}, {"law", {5, 24}},
      {"middle_school_mathematics", {5, 19}}, {"operating_system", {5, 19}}};
  EXPECT_EQ(counts(subjects), want);
  auto one = read_ceval(dir, {"computer_network"});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].display_name, "计算机网络");
  EXPECT_EQ(one[0].category, "STEM");
  EXPECT_EQ(one[0].items[0].answer, 'C');
  EXPECT_NE(error_message_of([&] { read_ceval(dir, {"no_such_subject"}); }).find("no_such_subject"), std::string::npos);
}

TEST(EvalBenchmarks, MmluParsesAll) {
  const std::string dir = shared_path("data/eval/mmlu");
  REQUIRE_SHARED(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {
      {"abstract_algebra", {5, 11}}, {"anatomy", {5, 14}}, {"astronomy", {5, 16}},
      {"college_computer_science", {5, 11}}, {"high_school_geography", {5, 22}}, {"marketing", {5, 25}},
      {"philosophy", {5, 34}}, {"world_religions", {5, 19}}};
  auto subjects = read_mmlu(dir);
  EXPECT_EQ(counts(subjects), want);
  EXPECT_EQ(subjects[4].display_name, "high school geography");
}

TEST(EvalBenchmarks, CmmluParsesAll) {
  const std::string dir = shared_path("data/eval/cmmlu");
  REQUIRE_SHARED(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {
      {"agronomy", {5, 169}}, {"anatomy", {5, 148}}, {"ancient_chinese", {5, 164}},
      {"chinese_history", {5, 323}}, {"computer_science", {5, 204}}, {"high_school_physics", {5, 110}},
      {"marketing", {5, 180}}, {"world_religions", {5, 160}}};
  auto subjects = read_cmmlu(dir);
  EXPECT_EQ(counts(subjects), want);
  EXPECT_EQ(subjects[0].display_name, "农学");
  EXPECT_EQ(subjects[0].category, "Other");
  EXPECT_EQ(subjects[1].category, "STEM");  // anatomy -> biology
}

// Usable counts: single one-letter answers whose A-D options a Python regex finds in the text
// (Biology 149 of 150, History 285 of 287, Math_I 214). Geography is not read at all: Obj_Prompt.json
// types it multi_question_choice (every item asks 2-3 questions).
TEST(EvalBenchmarks, GaokaoParsesAll) {
  const std::string dir = shared_path("data/eval/gaokao");
  REQUIRE_SHARED(dir);
  auto subjects = read_gaokao(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {{"2010-2022_Biology_MCQs", {5, 144}},
                                                           {"2010-2022_History_MCQs", {5, 280}},
                                                           {"2010-2022_Math_I_MCQs", {5, 209}}};
  EXPECT_EQ(counts(subjects), want);
  ASSERT_EQ(subjects.size(), 3u);
  ASSERT_EQ(subjects[1].display_name, "高考历史");
  EXPECT_EQ(subjects[1].skipped, 2u);
  const Question& q = subjects[1].shots.at(0);
  EXPECT_EQ(q.choices[0], "河南、河北");
  EXPECT_EQ(q.choices[3], "广东、广西");
  EXPECT_EQ(q.answer, 'C');
}

// A GAOKAO file with these items: `answers` is each item's answer list, as JSON.
std::string gaokao_file(const std::vector<std::string>& answers) {
  std::string examples;
  for (size_t i = 0; i < answers.size(); ++i)
    examples += std::string(i ? "," : "") + "{\"question\": \"问" + std::to_string(i) +
                "（ ）\\nA．甲 B．乙 C．丙 D．丁\", \"answer\": " + answers[i] + ", \"index\": " + std::to_string(i) + "}";
  return "{\"keywords\": \"x\", \"example\": [" + examples + "]}";
}

// GAOKAO-Bench's Obj_Prompt.json decides which files are single-choice: a file it types multi_choice
// is not scored even when every answer happens to be one letter, and one it does not list is not read.
TEST(EvalBenchmarks, GaokaoTakesOnlyFilesObjPromptTypesSingleChoice) {
  TempDir tmp;
  const std::string root = tmp.path.string() + "/g";
  tmp.write("g/Obj_Prompt.json",
            "{\"examples\": [{\"type\": \"single_choice\", \"keyword\": \"2010-2022_Biology_MCQs\", \"prefix_prompt\": \"\"},"
            " {\"type\": \"multi_choice\", \"keyword\": \"2010-2022_Physics_MCQs\", \"prefix_prompt\": \"\"},"
            " {\"type\": \"single_choice\", \"keyword\": \"2010-2022_Chemistry_MCQs\"}]}");
  tmp.write("g/Objective_Questions/2010-2022_Biology_MCQs.json", gaokao_file({"[\"A\"]", "[\"B\"]"}));
  tmp.write("g/Objective_Questions/2010-2022_Physics_MCQs.json", gaokao_file({"[\"C\"]", "[\"D\"]"}));
  tmp.write("g/Objective_Questions/2010-2022_Other_MCQs.json", gaokao_file({"[\"A\"]"}));  // not listed
  auto subjects = read_gaokao(root);
  ASSERT_EQ(subjects.size(), 1u);
  EXPECT_EQ(subjects[0].name, "2010-2022_Biology_MCQs");
  EXPECT_EQ(subjects[0].shots.size(), 2u);
  // Asked for by name, a file of another type is an error that says why.
  std::string e = error_message_of([&] { read_gaokao(root, {"2010-2022_Physics_MCQs"}); });
  EXPECT_NE(e.find("Obj_Prompt.json: types '2010-2022_Physics_MCQs' as multi_choice"), std::string::npos) << e;
  e = error_message_of([&] { read_gaokao(root, {"2010-2022_Other_MCQs"}); });
  EXPECT_NE(e.find("Obj_Prompt.json: does not list '2010-2022_Other_MCQs'"), std::string::npos) << e;
  tmp.write("g/Obj_Prompt.json", "{\"examples\": [{\"keyword\": \"2010-2022_Biology_MCQs\"}]}");
  e = error_message_of([&] { read_gaokao(root); });
  EXPECT_NE(e.find("Obj_Prompt.json: examples[0]: field 'type' missing"), std::string::npos) << e;
}

// Without Obj_Prompt.json: the *_MCQs files whose every answer is one letter. On the sample that is
// Biology, History and Math_I (Geography answers 2-3 letters per item); a multi_choice Physics file
// with one "AB" answer is left out.
TEST(EvalBenchmarks, GaokaoWithoutObjPromptTakesFilesWithOneLetterAnswers) {
  const std::string sample = shared_path("data/eval/gaokao");
  REQUIRE_SHARED(sample);
  TempDir tmp;
  for (const auto& entry : std::filesystem::directory_iterator(sample + "/Objective_Questions"))
    tmp.write("g/Objective_Questions/" + entry.path().filename().string(), baichuan::read_text_file(entry.path().string()));
  tmp.write("g/Objective_Questions/2010-2022_Physics_MCQs.json", gaokao_file({"[\"C\"]", "[\"AB\"]"}));
  const std::string root = tmp.path.string() + "/g";
  std::map<std::string, std::pair<size_t, size_t>> want = {{"2010-2022_Biology_MCQs", {5, 144}},
                                                           {"2010-2022_History_MCQs", {5, 280}},
                                                           {"2010-2022_Math_I_MCQs", {5, 209}}};
  EXPECT_EQ(counts(read_gaokao(root)), want);
  std::string e = error_message_of([&] { read_gaokao(root, {"2010-2022_Physics_MCQs"}); });
  EXPECT_NE(e.find("2010-2022_Physics_MCQs.json: not every answer is one letter"), std::string::npos) << e;
}

TEST(EvalBenchmarks, GaokaoOptionSplitting) {
  std::string stem;
  std::array<std::string, 4> c;
  ASSERT_TRUE(split_gaokao_options("DNA.的结构是（ ）\nA．双链 B. 单链\nC．环状\u3000 D．线状\n", stem, c));
  EXPECT_EQ(stem, "DNA.的结构是（ ）");
  EXPECT_EQ(c, (std::array<std::string, 4>{"双链", "单链", "环状", "线状"}));
  EXPECT_FALSE(split_gaokao_options("no options here A．x B．y", stem, c));
}

// Lines with 4 options and one label (lsat-ar has 5 options everywhere: 0 usable of 230).
TEST(EvalBenchmarks, AgievalParsesAll) {
  const std::string dir = shared_path("data/eval/agieval");
  REQUIRE_SHARED(dir);
  auto subjects = read_agieval(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {{"gaokao-biology", {5, 205}},
                                                           {"gaokao-history", {5, 230}},
                                                           {"logiqa-zh", {5, 646}},
                                                           {"lsat-ar", {0, 0}},
                                                           {"sat-math", {5, 215}}};
  EXPECT_EQ(counts(subjects), want);
  EXPECT_EQ(subjects[3].skipped, 230u);
  // logiqa-zh line 6 writes its options "A 陈蕊…" without parentheses: no "(X)" label, kept verbatim.
  EXPECT_EQ(subjects[2].items[0].choices[0], "A 陈蕊不会说中原官话");
  EXPECT_EQ(subjects[2].items[0].answer, 'B');
}

// OpenCompass's AGIEval: passage + question with nothing between; exactly one leading "(X)" removed
// from each option and nothing else (the space after it, padding, a second label all stay).
TEST(EvalBenchmarks, AgievalOptionsLoseOneLabelAndStayVerbatim) {
  TempDir tmp;
  const std::string row = "\"options\":[\"(A) 甲 \",\"(B)(B)乙\",\"C 丙\",\"  (D)丁\"],\"label\":\"B\"}\n";
  tmp.write("a/v1/t.jsonl", "{\"passage\":\"段落。\",\"question\":\"问题？\"," + row +
                                "{\"passage\":null,\"question\":\"问二\"," + row +
                                "{\"passage\":\"\",\"question\":\"问三\"," + row);
  const Subject s = read_agieval(tmp.path.string() + "/a").at(0);
  ASSERT_EQ(s.shots.size(), 3u);
  EXPECT_EQ(s.shots[0].question, "段落。问题？");
  EXPECT_EQ(s.shots[1].question, "问二");
  EXPECT_EQ(s.shots[2].question, "问三");
  EXPECT_EQ(s.shots[0].choices, (std::array<std::string, 4>{" 甲 ", "(B)乙", "C 丙", "  (D)丁"}));
  EXPECT_EQ(s.shots[0].answer, 'B');
}

// The header names the exam in Chinese, as C-Eval's does, for every AGIEval task.
TEST(EvalBenchmarks, AgievalNamesTheExamInChinese) {
  const std::map<std::string, std::string> want = {
      {"gaokao-chinese", "高考语文"}, {"gaokao-english", "高考英语"}, {"gaokao-geography", "高考地理"},
      {"gaokao-history", "高考历史"}, {"gaokao-biology", "高考生物"}, {"gaokao-chemistry", "高考化学"},
      {"gaokao-physics", "高考物理"}, {"gaokao-mathqa", "高考数学"},  {"logiqa-zh", "公务员"},
      {"logiqa-en", "公务员"},        {"lsat-ar", "LSAT"},            {"lsat-lr", "LSAT"},
      {"lsat-rc", "LSAT"},            {"sat-math", "SAT数学"},        {"sat-en", "SAT英语"},
      {"sat-en-without-passage", "SAT英语"}, {"aqua-rat", "GRE数学"}};
  TempDir tmp;
  for (const auto& [task, zh] : want)
    tmp.write("a/v1/" + task + ".jsonl", "{\"question\":\"q\",\"options\":[\"(A)1\",\"(B)2\",\"(C)3\",\"(D)4\"],\"label\":\"A\"}\n");
  std::map<std::string, std::string> got;
  for (const auto& s : read_agieval(tmp.path.string() + "/a")) got[s.name] = s.display_name;
  EXPECT_EQ(got, want);
}

TEST(EvalBenchmarks, BbhParsesAll) {
  const std::string dir = shared_path("data/eval/bbh");
  REQUIRE_SHARED(dir);
  auto tasks = read_bbh(dir);
  ASSERT_EQ(tasks.size(), 6u);
  for (const auto& t : tasks) {
    EXPECT_EQ(t.examples.size(), 250u) << t.name;
    EXPECT_TRUE(t.cot_prompt.find("canary") == std::string::npos) << t.name;
    EXPECT_EQ(t.cot_prompt.find("-----"), std::string::npos) << t.name;
  }
}

TEST(EvalBenchmarks, MalformedInputsNameFileAndLine) {
  TempDir tmp;
  const std::string root = tmp.path.string();
  tmp.write("m/dev/x_dev.csv", "q,a,b,c,d,A\n");
  tmp.write("m/val/x_val.csv", "q,a,b,c,d,A\nq2,a,b,c,E\n");  // missing column on line 2
  std::string e = error_message_of([&] { read_mmlu(root + "/m"); });
  EXPECT_NE(e.find("x_val.csv:2"), std::string::npos) << e;
  tmp.write("m/val/x_val.csv", "q,a,b,c,d,A\n\"q\n2\",a,b,c,d,E\n");  // answer not in A-D, row starts on line 2
  e = error_message_of([&] { read_mmlu(root + "/m"); });
  EXPECT_NE(e.find("x_val.csv:2"), std::string::npos) << e;
  EXPECT_NE(e.find("'E'"), std::string::npos) << e;

  tmp.write("a/v1/t.jsonl", "{\"question\":\"q\",\"options\":[\"(A)1\",\"(B)2\",\"(C)3\",\"(D)4\"],\"label\":\"A\"}\n{bad\n");
  e = error_message_of([&] { read_agieval(root + "/a"); });
  EXPECT_NE(e.find("t.jsonl:2"), std::string::npos) << e;

  tmp.write("g/Objective_Questions/x_MCQs.json", "{\"keywords\": \"x\", \"example\": [");
  e = error_message_of([&] { read_gaokao(root + "/g"); });
  EXPECT_NE(e.find("x_MCQs.json: invalid JSON"), std::string::npos) << e;
  tmp.write("g/Objective_Questions/x_MCQs.json", "{\"example\": [{\"answer\": [\"A\"]}]}");
  e = error_message_of([&] { read_gaokao(root + "/g"); });
  EXPECT_NE(e.find("example[0]: field 'question'"), std::string::npos) << e;

  tmp.write("c/subject_mapping.json", "{\"x\": [\"X\", \"某\", \"STEM\"]}");
  tmp.write("c/dev/x_dev.csv", "id,question,A,B,C,D,answer,explanation\n0,q,a,b,c,d,A,e\n");
  tmp.write("c/val/x_val.csv", "id,question,A,B,C,D\n0,q,a,b,c,d\n");  // test-style header, no answers
  e = error_message_of([&] { read_ceval(root + "/c"); });
  EXPECT_NE(e.find("x_val.csv:1: header column 7"), std::string::npos) << e;
}

}  // namespace eval_benchmarks_test
