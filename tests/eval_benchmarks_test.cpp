#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "eval/bbh.h"
#include "eval/benchmarks.h"
#include "shared_data.h"

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
    path = std::filesystem::temp_directory_path() /
           ("baichuan_eval_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const baichuan::Error& e) {
    return e.what();
  }
  return "(no error)";
}


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
  EXPECT_NE(error_of([&] { read_ceval(dir, {"no_such_subject"}); }).find("no_such_subject"), std::string::npos);
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
// (Biology 149 of 150, History 285 of 287, Geography 0 of 34 — all multi-question, Math_I 214).
TEST(EvalBenchmarks, GaokaoParsesAll) {
  const std::string dir = shared_path("data/eval/gaokao");
  REQUIRE_SHARED(dir);
  auto subjects = read_gaokao(dir);
  std::map<std::string, std::pair<size_t, size_t>> want = {{"2010-2022_Biology_MCQs", {5, 144}},
                                                           {"2010-2022_Geography_MCQs", {0, 0}},
                                                           {"2010-2022_History_MCQs", {5, 280}},
                                                           {"2010-2022_Math_I_MCQs", {5, 209}}};
  EXPECT_EQ(counts(subjects), want);
  EXPECT_EQ(subjects[1].skipped, 34u);
  EXPECT_EQ(subjects[2].skipped, 2u);
  EXPECT_EQ(subjects[2].display_name, "高考历史");
  const Question& q = subjects[2].shots[0];
  EXPECT_EQ(q.choices[0], "河南、河北");
  EXPECT_EQ(q.choices[3], "广东、广西");
  EXPECT_EQ(q.answer, 'C');
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
  // logiqa-zh line 6 writes its options "A 陈蕊…" without parentheses.
  EXPECT_EQ(subjects[2].items[0].choices[0], "陈蕊不会说中原官话");
  EXPECT_EQ(subjects[2].items[0].answer, 'B');
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
  std::string e = error_of([&] { read_mmlu(root + "/m"); });
  EXPECT_NE(e.find("x_val.csv:2"), std::string::npos) << e;
  tmp.write("m/val/x_val.csv", "q,a,b,c,d,A\n\"q\n2\",a,b,c,d,E\n");  // answer not in A-D, row starts on line 2
  e = error_of([&] { read_mmlu(root + "/m"); });
  EXPECT_NE(e.find("x_val.csv:2"), std::string::npos) << e;
  EXPECT_NE(e.find("'E'"), std::string::npos) << e;

  tmp.write("a/v1/t.jsonl", "{\"question\":\"q\",\"options\":[\"(A)1\",\"(B)2\",\"(C)3\",\"(D)4\"],\"label\":\"A\"}\n{bad\n");
  e = error_of([&] { read_agieval(root + "/a"); });
  EXPECT_NE(e.find("t.jsonl:2"), std::string::npos) << e;

  tmp.write("g/Objective_Questions/x_MCQs.json", "{\"keywords\": \"x\", \"example\": [");
  e = error_of([&] { read_gaokao(root + "/g"); });
  EXPECT_NE(e.find("x_MCQs.json: invalid JSON"), std::string::npos) << e;
  tmp.write("g/Objective_Questions/x_MCQs.json", "{\"example\": [{\"answer\": [\"A\"]}]}");
  e = error_of([&] { read_gaokao(root + "/g"); });
  EXPECT_NE(e.find("example[0]: field 'question'"), std::string::npos) << e;

  tmp.write("c/subject_mapping.json", "{\"x\": [\"X\", \"某\", \"STEM\"]}");
  tmp.write("c/dev/x_dev.csv", "id,question,A,B,C,D,answer,explanation\n0,q,a,b,c,d,A,e\n");
  tmp.write("c/val/x_val.csv", "id,question,A,B,C,D\n0,q,a,b,c,d\n");  // test-style header, no answers
  e = error_of([&] { read_ceval(root + "/c"); });
  EXPECT_NE(e.find("x_val.csv:1: header column 7"), std::string::npos) << e;
}

}  // namespace eval_benchmarks_test
