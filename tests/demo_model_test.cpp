// The shipped demo model (models/demo.gguf, made by scripts/train_demo.sh): it loads with its own
// vocabulary, the chat pieces are the ids its generation config names, and a greedy answer to the chat
// prompt of a title it was trained on has the shape of its training answers: an author line, verse
// lines of clauses each ending in a punctuation mark, then EOS. (Lines of 5 or 7 characters it keeps in
// 10 of 100 held-out titles, see models/README.md: too few to pin here; the random start gets none
// of this shape.)
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "generate/generator.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace baichuan {
namespace demo_model_test {  // named, not anonymous: the tests compile as a unity build

const std::string kDemoPath = std::string(BAICHUAN_MODELS_DIR) + "/demo.gguf";

// A title of the training split (孟浩然's poem, and 元稹's); the prompt as the README's first command
// builds it.
const std::string kTrainingTitle = "春曉";
std::string demo_chat_prompt(const std::string& title) { return "<reserved_106>寫一首題為《" + title + "》的詩<reserved_107>"; }

// The verse clauses of a generated answer: the first line is the author, the rest is cut at the
// punctuation marks; a clause with no mark after it (cut off by the length limit) is left out.
std::vector<std::u32string> demo_verse_clauses(const std::string& answer) {
  const size_t newline = answer.find('\n');
  const std::string verse = newline == std::string::npos ? answer : answer.substr(newline + 1);
  std::u32string text;
  for (size_t i = 0; i < verse.size();) {  // UTF-8 to code points (the answer is valid UTF-8)
    const auto c = static_cast<unsigned char>(verse[i]);
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (int k = 1; k < n && i + static_cast<size_t>(k) < verse.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(verse[i + static_cast<size_t>(k)]) & 0x3F);
    text += cp;
    i += static_cast<size_t>(n);
  }
  const std::u32string marks = U"，。？！；：、";
  std::vector<std::u32string> clauses;
  std::u32string clause;
  for (char32_t c : text) {
    if (c == U'\n') continue;
    if (marks.find(c) == std::u32string::npos) {
      clause += c;
    } else if (!clause.empty()) {
      clauses.push_back(std::exchange(clause, {}));
    }
  }
  return clauses;
}

class DemoModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!file_exists(kDemoPath)) GTEST_SKIP() << "skipped: " << kDemoPath << " is absent (scripts/train_demo.sh makes it)";
    static std::unique_ptr<Model> model = load_model(kDemoPath);
    model_ = model.get();
  }
  Model* model_ = nullptr;
};

TEST_F(DemoModel, LoadsAsASmallBaichuan2WithItsOwnVocabulary) {
  const ModelConfig& c = model_->config();
  EXPECT_EQ(c.position, PositionEncoding::Rope);
  EXPECT_EQ(c.vocab_size, 8000);
  EXPECT_EQ(model_->tokenizer().vocab_size(), 8000);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(model_->generation().user_token_id, 195);
  EXPECT_EQ(model_->generation().assistant_token_id, 196);
  EXPECT_EQ(model_->tokenizer().eos_id(), 2);
  EXPECT_LE(std::filesystem::file_size(kDemoPath), 20u << 20) << "the demo model should stay within 20 MB";
}

TEST_F(DemoModel, ChatPromptTokenizesToTheReservedIds) {
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<int32_t> ids = tok.encode(demo_chat_prompt(kTrainingTitle));
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 195);
  EXPECT_EQ(ids.back(), 196);
  // The text between them is ordinary pieces (no unknowns) and decodes back.
  const std::vector<int32_t> inner(ids.begin() + 1, ids.end() - 1);
  for (int32_t id : inner) EXPECT_GT(id, 196) << "the prompt's text should be ordinary pieces";
  EXPECT_EQ(tok.decode(inner), "寫一首題為《" + kTrainingTitle + "》的詩");
}

TEST_F(DemoModel, GreedyAnswerOfATrainingTitleIsAuthorThenVerseThenEos) {
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = model_->tokenizer().encode(demo_chat_prompt(kTrainingTitle));
  GenerateOptions options;
  options.max_new_tokens = 96;
  options.sampling.greedy = true;
  Generator generator(*model_, pool, static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  const GenerateResult r = generator.generate(prompt, options);
  EXPECT_EQ(r.finish_reason, FinishReason::Stop) << "no EOS within 96 tokens:\n" << r.text;
  const size_t newline = r.text.find('\n');
  ASSERT_NE(newline, std::string::npos) << r.text;
  const std::string author = r.text.substr(0, newline);
  EXPECT_FALSE(author.empty()) << r.text;
  EXPECT_TRUE(demo_verse_clauses(author).empty()) << "the author line has punctuation:\n" << r.text;
  EXPECT_GE(demo_verse_clauses(r.text).size(), 2u) << r.text;
  // Every verse line ends in a full stop (or a question / exclamation mark).
  for (size_t begin = newline + 1; begin < r.text.size();) {
    size_t end = r.text.find('\n', begin);
    if (end == std::string::npos) end = r.text.size();
    const std::string line = r.text.substr(begin, end - begin);
    const bool closed = line.ends_with("。") || line.ends_with("？") || line.ends_with("！");
    EXPECT_TRUE(closed) << "line '" << line << "' of:\n" << r.text;
    begin = end + 1;
  }
}

}  // namespace demo_model_test
}  // namespace baichuan
