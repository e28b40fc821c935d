// GGUF files made by llama.cpp's own converter (../shared/reference/b2-7b-tiny-llamacpp): the
// vocabulary lost SentencePiece's user-defined piece types, which the loader restores so that
// tokenization equals the original tokenizer.model's. (Logits, greedy tokens and chats: the golden
// suite's LlamaCppGguf7B case.)
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "model/checkpoint.h"
#include "shared_data.h"
#include "tokenizer/tokenizer.h"

namespace baichuan {
namespace llamacpp_gguf_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::shared_path;

std::string llamacpp_file() { return shared_path("reference/b2-7b-tiny-llamacpp/b2-7b-tiny-llamacpp-bf16.gguf"); }

TEST(LlamaCppGguf, UserDefinedTypesAreRestoredExactly) {
  REQUIRE_SHARED(llamacpp_file());
  gguf::File f = gguf::read_file(llamacpp_file());
  auto pieces = f.get("tokenizer.ggml.tokens").as_strings("t");
  auto scores = f.get("tokenizer.ggml.scores").as_floats("s");
  auto types = f.get("tokenizer.ggml.token_type").as_ints("y");
  Tokenizer real = Tokenizer::from_file(shared_path("reference/b2-7b-tiny/tokenizer.model"));
  ASSERT_EQ(types.size(), static_cast<size_t>(real.vocab_size()));
  size_t differ_before = 0;
  for (int32_t id = 0; id < real.vocab_size(); ++id) differ_before += types[id] != static_cast<int32_t>(real.type(id));
  EXPECT_EQ(differ_before, 1086u);  // what llama.cpp's converter lost

  EXPECT_EQ(restore_user_defined_types(pieces, scores, types), 1086);
  for (int32_t id = 0; id < real.vocab_size(); ++id)
    ASSERT_EQ(types[id], static_cast<int32_t>(real.type(id))) << "id " << id << " '" << pieces[id] << "'";
  // Idempotent: a vocabulary with its types intact is left alone.
  EXPECT_EQ(restore_user_defined_types(pieces, scores, types), 0);
}

TEST(LlamaCppGguf, RestoreLeavesOtherLayoutsAlone) {
  // No byte pieces: nothing can be told apart.
  std::vector<int32_t> types = {2, 1, 1};
  EXPECT_EQ(restore_user_defined_types({"<unk>", "a", "b"}, {0, 0, -1}, types), 0);
  // A learned piece (non-zero score) before the bytes: not a SentencePiece layout.
  types = {2, 1, 6, 1};
  EXPECT_EQ(restore_user_defined_types({"<unk>", "ab", "<0x00>", "c"}, {0, -3, 0, -1}, types), 0);
  EXPECT_EQ(types, (std::vector<int32_t>{2, 1, 6, 1}));
  // The SentencePiece layout: meta pieces, bytes, learned pieces.
  types = {2, 3, 1, 6, 1};
  EXPECT_EQ(restore_user_defined_types({"<unk>", "<s>", "<SEP>", "<0x00>", "c"}, {0, 0, 0, 0, 0}, types), 1);
  EXPECT_EQ(types, (std::vector<int32_t>{2, 3, 4, 6, 1}));
}

TEST(LlamaCppGguf, TokenizesAsTheOriginalAndSaysSoInTheLoadLine) {
  REQUIRE_SHARED(llamacpp_file());
  Checkpoint c = open_checkpoint(llamacpp_file());
  EXPECT_NE(c.description.find("1086 user-defined tokenizer piece types restored"), std::string::npos) << c.description;
  EXPECT_NE(c.tokenizer_origin.find("restored"), std::string::npos) << c.tokenizer_origin;
  EXPECT_FALSE(c.head_normalized.has_value());  // llama.cpp does not say (its head is raw)
  Tokenizer real = Tokenizer::from_file(shared_path("reference/b2-7b-tiny/tokenizer.model"));
  // The chat tokens stay one id each (llama.cpp's types split them into 12 pieces).
  EXPECT_EQ(c.tokenizer->encode("<reserved_106>你好<reserved_107>"), real.encode("<reserved_106>你好<reserved_107>"));
  EXPECT_EQ(c.tokenizer->encode("<reserved_106>你好<reserved_107>"), (std::vector<int32_t>{195, 16829, 196}));
  for (const char* s : {"a\nb\tc", "<table><tr><td>1</td></tr></table>", "<SEP><CLS>x", "def f(x):\n    return x + 1\n",
                        "  a  b  ", "床前明月光\n疑是地上霜", "a</s>b<s>"})
    EXPECT_EQ(c.tokenizer->encode(s), real.encode(s)) << s;
}

// Every line of the shared corpus, eval and BELLE text (one line in 16: the vocabulary-rebuilt
// tokenizer is already compared with SentencePiece on every line by TokenizerData, and the types
// are checked equal id by id above).
TEST(LlamaCppGguf, CorpusLinesTokenizeAsTheOriginal) {
  REQUIRE_SHARED(llamacpp_file());
  const std::string data = shared_path("data");
  REQUIRE_SHARED(data);
  Checkpoint c = open_checkpoint(llamacpp_file());
  Tokenizer real = Tokenizer::from_file(shared_path("reference/b2-7b-tiny/tokenizer.model"));
  std::vector<fs::path> files;
  for (const char* sub : {"corpus", "eval", "belle"})
    if (fs::exists(data + "/" + sub))
      for (const auto& e : fs::recursive_directory_iterator(data + "/" + sub))
        if (e.is_regular_file()) {
          auto ext = e.path().extension();
          if (ext == ".txt" || ext == ".csv" || ext == ".json" || ext == ".jsonl") files.push_back(e.path());
        }
  size_t lines = 0, failures = 0;
  for (const fs::path& f : files) {
    std::string text = read_text_file(f.string());
    size_t line_no = 0;
    for (size_t pos = 0; pos <= text.size(); ++line_no) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      if (line_no % 16 != 0) continue;
      ++lines;
      if (c.tokenizer->encode(line) != real.encode(line) && ++failures <= 10)
        ADD_FAILURE() << f.string() << ":" << line_no + 1 << ": " << line;
    }
  }
  EXPECT_EQ(failures, 0u);
  EXPECT_GT(lines, 1000u);
}

TEST(LlamaCppGguf, TokenizerOptionOverridesTheVocabulary) {
  REQUIRE_SHARED(llamacpp_file());
  LoadOptions o;
  o.tokenizer_path = shared_path("reference/b2-7b-tiny/tokenizer.model");
  Checkpoint c = open_checkpoint(llamacpp_file(), o);
  EXPECT_NE(c.tokenizer_origin.find("--tokenizer"), std::string::npos);
  EXPECT_EQ(c.tokenizer->model_bytes(), read_text_file(*o.tokenizer_path));
}

}  // namespace llamacpp_gguf_test
}  // namespace baichuan
