#include <gtest/gtest.h>

#include <vector>

#include "eval/bbh.h"
#include "eval/benchmarks.h"
#include "eval/prompts.h"
#include "shared_data.h"
#include "tokenizer/tokenizer.h"

using namespace baichuan::eval;
using baichuan::testing::shared_path;

// Expected prompts below are written out by hand from the data files (first shot and first scored item).
TEST(EvalPrompts, CevalComputerNetwork) {
  const std::string dir = shared_path("data/eval/ceval");
  REQUIRE_SHARED(dir);
  Subject s = read_ceval(dir, {"computer_network"}).at(0);
  EXPECT_EQ(ceval_prompt(s, s.items[0], 1),
            "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n"
            "\n下列设备属于资源子网的是____。\nA. 计算机软件\nB. 网桥\nC. 交换机\nD. 路由器\n答案：A"
            "\n使用位填充方法，以01111110为位首flag，数据为011011111111111111110010，求问传送时要添加几个0____"
            "\nA. 1\nB. 2\nC. 3\nD. 4\n答案：");
}

TEST(EvalPrompts, MmluAnatomy) {
  const std::string dir = shared_path("data/eval/mmlu");
  REQUIRE_SHARED(dir);
  Subject s = read_mmlu(dir, {"anatomy"}).at(0);
  auto few = [](const std::string&) { return size_t{1}; };
  EXPECT_EQ(mmlu_prompt(s, s.items[0], 1, few),
            "The following are multiple choice questions (with answers) about  anatomy.\n\n"
            "What is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\n"
            "B. The first and second pharyngeal arches\nC. The second pharyngeal arch\n"
            "D. The second and third pharyngeal arches\nAnswer: D\n\n"
            "Which of the following terms describes the body's ability to maintain its normal state?\n"
            "A. Anabolism\nB. Catabolism\nC. Tolerance\nD. Homeostasis\nAnswer:");
}

TEST(EvalPrompts, MmluDropsShotsFromTheEndUntilItFits) {
  Subject s;
  s.name = "high_school_geography";
  for (char c : std::string("12345")) s.shots.push_back({"", std::string("s") + c, {"a", "b", "c", "d"}, 'B'});
  Question item{"", "q", {"a", "b", "c", "d"}, 'A'};
  auto bytes = [](const std::string& p) { return p.size(); };
  const std::string header = "The following are multiple choice questions (with answers) about  high school geography.\n\n";
  const std::string shot = "\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n";
  const std::string end = "q\nA. a\nB. b\nC. c\nD. d\nAnswer:";
  std::string two = header + "s1" + shot + "s2" + shot + end;
  EXPECT_EQ(mmlu_prompt(s, item, 5, bytes, two.size()), two);
  EXPECT_EQ(mmlu_prompt(s, item, 5, bytes, 1), header + end);  // never below zero shots
}

TEST(EvalPrompts, CmmluAgronomy) {
  const std::string dir = shared_path("data/eval/cmmlu");
  REQUIRE_SHARED(dir);
  Subject s = read_cmmlu(dir, {"agronomy"}).at(0);
  EXPECT_EQ(cmmlu_prompt(s, s.items[0], 1),
            "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"
            "题目：肉牛屠宰后，胴体的哪个部位肉质较好\nA. 胸\nB. 腹\nC. 大腿\nD. 小腿\n答案是：C\n\n"
            "题目：在农业生产中被当作极其重要的劳动对象发挥作用，最主要的不可替代的基本生产资料是\n"
            "A. 农业生产工具\nB. 土地\nC. 劳动力\nD. 资金\n答案是：");
}

TEST(EvalPrompts, GaokaoHistory) {
  const std::string dir = shared_path("data/eval/gaokao");
  REQUIRE_SHARED(dir);
  Subject s = read_gaokao(dir, {"2010-2022_History_MCQs"}).at(0);
  EXPECT_EQ(ceval_prompt(s, s.items[0], 1),
            "以下是中国关于高考历史考试的单项选择题，请选出其中的正确答案。\n"
            "\n1．（ 4分）西周分封制在中国历史上影响深远。下列省、自治区中，其简称源\n自西周封国国名的是（ \u3000\u3000）"
            "\nA. 河南、河北\nB. 湖南、湖北\nC. 山东、山西\nD. 广东、广西\n答案：C"
            "\n7．（4分）19世纪中期 ，许多与西学相关的 “日本新词 ”来自中国 。而在 20世纪\n初年，大量与西学相关的 "
            "“日本新词 ”，如劳动、方针、政策、理论等迅速传\n入中国。出现这一变化的决定性因素是（ \u3000\u3000）"
            "\nA. 中国留学日本人数增多\nB. 中国在甲午战争中战败\nC. 日本明治维新成效显著\nD. 日本先于中国接触西学\n答案：");
}

TEST(EvalPrompts, AgievalGaokaoHistory) {
  const std::string dir = shared_path("data/eval/agieval");
  REQUIRE_SHARED(dir);
  Subject s = read_agieval(dir, {"gaokao-history"}).at(0);
  EXPECT_EQ(ceval_prompt(s, s.items[0], 1),
            "以下是中国关于高考历史考试的单项选择题，请选出其中的正确答案。\n"
            "\n“一万年农业，五千年文明，两千年大一统”指的是\nA. 中华文明\nB. 埃及文明\nC. 印度文明\nD. 希腊文明\n答案：A"
            "\n“井田之变，豪人货殖，馆舍布于州郡，田亩连于方国”描述的是\nA. 西周诸侯封地的情况\nB. 秦朝实行郡县制后的情况"
            "\nC. 汉武帝时代的盛况\nD. 东汉豪强势力膨胀的情况\n答案：");
}

// AGIEval as OpenCompass builds it: passage and question joined with nothing between them, options
// with their "(A)" label removed and otherwise verbatim (line 6 writes "A 陈蕊…" without parentheses:
// it stays whole), and the exam named in Chinese (logiqa-zh: civil-service exam, 公务员).
TEST(EvalPrompts, AgievalLogiqaZhPassagePlusQuestion) {
  const std::string dir = shared_path("data/eval/agieval");
  REQUIRE_SHARED(dir);
  Subject s = read_agieval(dir, {"logiqa-zh"}).at(0);
  EXPECT_EQ(ceval_prompt(s, s.items[0], 1),
            "以下是中国关于公务员考试的单项选择题，请选出其中的正确答案。\n"
            "\n某乡镇进行新区规划，决定以市民公园为中心，在东南西北分别建设一个特色社区。这四个社区分别定为，文化区、"
            "休闲区、商业区和行政服务区。已知行政服务区在文化区的西南方向，文化区在休闲区的东南方向。"
            "根据以上陈述，可以得出以下哪项？"
            "\nA. 市民公园在行政服务区的北面\nB. 休闲区在文化区的西南\nC. 文化区在商业区的东北\nD. 商业区在休闲区的东南"
            "\n答案：A"
            "\n张明、李英、王佳和陈蕊四人在一个班组工作，他们来自江苏、安徽、福建和山东四个省，每个人只会说原籍的一种方言，"
            "现已知福建人会说闽南方言，山东人学历最高，且会说中原官话，王佳比福建人学历低，李英会说徽州话并且和来自江苏的"
            "同学是同事。陈蕊不懂闽南方言。根据以上陈述可以得到下面哪项："
            "\nA. A 陈蕊不会说中原官话\nB. B 张明会说闽南方言\nC. C 李英是山东人\nD. D 王佳会说徽州话\n答案：");
}

TEST(EvalPrompts, BbhSportsUnderstanding) {
  const std::string dir = shared_path("data/eval/bbh");
  REQUIRE_SHARED(dir);
  BbhTask t = read_bbh(dir, {"sports_understanding"}).at(0);
  EXPECT_EQ(bbh_prompt(t, t.examples[0].input),
            "Follow the given examples and answer the question.\n"  // OpenCompass's first line
            "Determine whether an artificially constructed sentence relating to sports is plausible or not.\n\n"
            "Q: Is the following sentence plausible? \"Bam Adebayo scored a reverse layup in the Western Conference "
            "Finals.\"\n"
            "A: Let's think step by step. Bam Adebayo is an American basketball player. Scoring a reverse layup in the "
            "Western Conference Finals is part of the NBA Finals. So the answer is yes.\n\n"
            "Q: Is the following sentence plausible? \"Santi Cazorla scored a touchdown.\"\n"
            "A: Let's think step by step. Santi Cazorla is a soccer player. Touchdown is part of American football and "
            "rugby. So the answer is no.\n\n"
            "Q: Is the following sentence plausible? \"DeMar DeRozan was called for the goal tend.\"\n"
            "A: Let's think step by step. DeMar DeRozan is an American basketball player. Goal tending is part of "
            "basketball. So the answer is yes.\n\n"
            "Q: Is the following sentence plausible? \"Elias Lindholm beat the buzzer.\"\n"
            "A: Let's think step by step.");
  EXPECT_EQ(t.examples[0].target, "no");
}

TEST(EvalPrompts, BbhAnswerExtraction) {
  EXPECT_EQ(extract_bbh_answer(" Elias is a hockey player. So the answer is no."), "no");
  EXPECT_EQ(extract_bbh_answer("No conclusion given."), std::nullopt);
  EXPECT_EQ(extract_bbh_answer(""), std::nullopt);
  // The first occurrence wins; the rest of its line is the answer.
  EXPECT_EQ(extract_bbh_answer("So the answer is (B).\nWait. So the answer is (C)."), "(B)");
  EXPECT_EQ(extract_bbh_answer("Step 1.\nStep 2.\nSo the answer is True.\n"), "True");
  EXPECT_EQ(extract_bbh_answer("Thus the answer is \"yes\"."), "yes");
  EXPECT_EQ(extract_bbh_answer("So the answer is   abbe adposition arragon  ."), "abbe adposition arragon");
  EXPECT_EQ(extract_bbh_answer("So the answer is 12/25/1937"), "12/25/1937");  // no period: kept whole
  EXPECT_EQ(extract_bbh_answer("So the answer is"), "");                     // cut off: empty answer

  EXPECT_TRUE(bbh_answer_matches(std::string("(A)"), "(A)"));
  EXPECT_TRUE(bbh_answer_matches(std::string("A"), "(A)"));
  EXPECT_TRUE(bbh_answer_matches(std::string("(B) 12/25/1937"), "(B)"));
  EXPECT_FALSE(bbh_answer_matches(std::string("(B)"), "(A)"));
  EXPECT_FALSE(bbh_answer_matches(std::string("Yes"), "yes"));  // exact match, case included
  EXPECT_FALSE(bbh_answer_matches(std::nullopt, "no"));
  EXPECT_FALSE(bbh_answer_matches(std::string("(A)"), "A"));
}

TEST(EvalPrompts, ChooseLetter) {
  std::vector<float> logits(10, 0.0f);
  std::array<int32_t, 4> ids{3, 5, 7, 9};
  logits[7] = 2.0f;
  logits[2] = 9.0f;  // not an answer token
  EXPECT_EQ(choose_letter(logits.data(), ids), 'C');
  logits[7] = 0.0f;
  EXPECT_EQ(choose_letter(logits.data(), ids), 'A');  // ties: the earlier letter
}

TEST(EvalPrompts, ChoiceTokenIdsOfBaichuanTokenizer) {
  const std::string path = shared_path("assets/baichuan2/tokenizer.model");
  REQUIRE_SHARED(path);
  auto tok = baichuan::Tokenizer::from_file(path);
  auto ids = choice_token_ids(tok);
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_EQ(tok.piece(ids[c]), std::string(1, static_cast<char>('A' + c)));
    // Baichuan 2 adds no dummy-prefix space, so a lone letter encodes to that same piece.
    EXPECT_EQ(tok.encode(std::string(1, static_cast<char>('A' + c))), std::vector<int32_t>{ids[c]});
  }
}
