// What `baichuan preprocess` reads: BELLE, Alpaca and plain-text records from JSON arrays and JSON
// Lines, one at a time; bad records named by file, record and field; the official fine-tune labels, and
// the pre-training rows of text records.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "error_matchers.h"
#include "preprocess_fixtures.h"
#include "tokenizer/tokenizer.h"
#include "train/belle_records.h"
#include "train/dataset_preprocess.h"
#include "train/dataset_sample.h"

namespace baichuan {
namespace preprocess_input_test {  // named, not anonymous: the tests compile as a unity build

using testing::ScratchDir;
using testing::write_text;
using train::BadRecord;
using train::Conversation;
using train::ConversationReader;
using train::InputLayout;

struct ReadResult {
  std::vector<Conversation> records;
  std::vector<BadRecord> bad;
  InputLayout layout = InputLayout::Auto;
  bool json_lines = false;
};

ReadResult read_all(const std::string& path, InputLayout layout = InputLayout::Auto, bool skip_bad = false) {
  ReadResult r;
  ConversationReader reader(path, layout);
  reader.read([&](Conversation&& c) { r.records.push_back(std::move(c)); },
              skip_bad ? std::function<void(const BadRecord&)>([&](const BadRecord& b) { r.bad.push_back(b); }) : nullptr);
  r.layout = reader.layout();
  r.json_lines = reader.json_lines();
  return r;
}

// The message of the Error reading `path` throws ("" if none).
std::string read_error(const std::string& path, InputLayout layout = InputLayout::Auto) {
  return baichuan::testing::error_message_of([&] { read_all(path, layout); }, "");
}

std::vector<std::pair<std::string, std::string>> turns(const Conversation& c) {
  std::vector<std::pair<std::string, std::string>> t;
  for (const auto& turn : c.turns) t.emplace_back(turn.from, turn.value);
  return t;
}

using Turns = std::vector<std::pair<std::string, std::string>>;

TEST(ConversationReader, BelleArrayAndJsonLinesGiveTheSameConversations) {
  ScratchDir dir;
  const std::string a = R"({"id": "a1", "conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "在"}]})";
  const std::string b = R"({"id": 7, "conversations": [{"from": "human", "value": "x\ny"}, {"from": "assistant", "value": ""},)"
                        R"( {"from": "human", "value": "z"}], "extra": {"ignored": [1, 2]}})";
  write_text(dir / "d.json", "\xEF\xBB\xBF[\n  " + a + ",\n  " + b + "\n]\n");  // with a byte order mark
  write_text(dir / "d.jsonl", a + "\n\n" + b + "\r\n");                     // a blank line, a CRLF
  for (const char* name : {"d.json", "d.jsonl"}) {
    const ReadResult r = read_all(dir / name);
    EXPECT_EQ(r.json_lines, std::string(name) == "d.jsonl") << name;
    EXPECT_EQ(r.layout, InputLayout::Belle) << name;
    ASSERT_EQ(r.records.size(), 2u) << name;
    EXPECT_EQ(r.records[0].id, "a1");
    EXPECT_EQ(turns(r.records[0]), (Turns{{"human", "你好"}, {"gpt", "在"}}));
    EXPECT_EQ(r.records[1].id, "7");
    EXPECT_EQ(turns(r.records[1]), (Turns{{"human", "x\ny"}, {"assistant", ""}, {"human", "z"}}));
  }
}

TEST(ConversationReader, AlpacaBecomesHistoryThenInstructionAndOutput) {
  ScratchDir dir;
  write_text(dir / "a.json", R"([
    {"instruction": "翻译", "input": "hello", "output": "你好", "history": [["q1", "a1"], ["q2", "a2"]]},
    {"instruction": "只有指令", "input": "", "output": "好"},
    {"instruction": "无输入字段", "output": "是", "history": null}
  ])");
  const ReadResult r = read_all(dir / "a.json");
  EXPECT_EQ(r.layout, InputLayout::Alpaca);
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ(turns(r.records[0]), (Turns{{"human", "q1"}, {"gpt", "a1"}, {"human", "q2"}, {"gpt", "a2"},
                                        {"human", "翻译\nhello"}, {"gpt", "你好"}}));
  EXPECT_EQ(turns(r.records[1]), (Turns{{"human", "只有指令"}, {"gpt", "好"}}));
  EXPECT_EQ(turns(r.records[2]), (Turns{{"human", "无输入字段"}, {"gpt", "是"}}));
  // Without ids, a record is named by its 0-based position.
  EXPECT_EQ(r.records[2].id, "2");
  // --layout belle on Alpaca data: the missing field is named.
  EXPECT_NE(read_error(dir / "a.json", InputLayout::Belle).find("record 1: field 'conversations': missing"), std::string::npos)
      << read_error(dir / "a.json", InputLayout::Belle);
}

TEST(ConversationReader, TextRecordsAreOneTurnOfTheirText) {
  ScratchDir dir;
  write_text(dir / "t.jsonl", "{\"text\": \"床前明月光\\n疑是地上霜\"}\n{\"id\": \"p2\", \"text\": \"\", \"author\": \"x\"}\n");
  const ReadResult r = read_all(dir / "t.jsonl");
  EXPECT_EQ(r.layout, InputLayout::Text);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].id, "0");
  EXPECT_EQ(turns(r.records[0]), (Turns{{"text", "床前明月光\n疑是地上霜"}}));
  EXPECT_EQ(r.records[1].id, "p2");
  EXPECT_EQ(turns(r.records[1]), (Turns{{"text", ""}}));
  EXPECT_EQ(train::parse_input_layout("text"), InputLayout::Text);
  EXPECT_STREQ(train::layout_name(InputLayout::Text), "text");
  // A text that is not a string, and --layout text on BELLE data: the field is named.
  write_text(dir / "bad.json", R"([{"text": "ok"}, {"id": "x", "text": 3}])");
  EXPECT_NE(read_error(dir / "bad.json").find("record 2 (id \"x\"): field 'text': expected a string, got a number 3"),
            std::string::npos)
      << read_error(dir / "bad.json");
  write_text(dir / "belle.json", R"([{"conversations": []}])");
  EXPECT_NE(read_error(dir / "belle.json", InputLayout::Text).find("record 1: field 'text': missing"), std::string::npos)
      << read_error(dir / "belle.json", InputLayout::Text);
}

TEST(ConversationReader, BadRecordsNameFileRecordAndField) {
  ScratchDir dir;
  const std::string good = R"({"id": "ok", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})";
  struct Case {
    std::string record, expect;
  };
  const std::vector<Case> cases = {
      {R"({"id": "x", "conversations": [{"from": "human", "value": 42}]})",
       "record 2 (id \"x\"): field 'conversations[0].value': expected a string, got a number 42"},
      {R"({"id": "x", "conversations": [{"from": "human"}]})", "field 'conversations[0].value': missing"},
      {R"({"id": "x", "conversations": [{"from": null, "value": "v"}]})", "field 'conversations[0].from': expected a string, got null"},
      {R"({"id": "x", "conversations": ["just text"]})", "field 'conversations[0]': expected an object"},
      {R"({"id": "x", "conversations": {"from": "human"}})", "field 'conversations': expected an array of turns, got an object"},
      {R"({"id": "x", "dialog": []})", "field 'conversations': missing"},
      {R"({"id": "x", "conversations": []})", "field 'conversations': empty: a record needs at least one turn"},
      {R"("a string")", "record 2: expected an object, got a string \"a string\""},
  };
  for (const auto& c : cases) {
    write_text(dir / "bad.json", "[" + good + ", " + c.record + ", " + good + "]");
    const std::string err = read_error(dir / "bad.json");
    EXPECT_NE(err.find(dir / "bad.json"), std::string::npos) << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << "got: " << err << "\nexpected: " << c.expect;
    // With skip-bad: counted, listed, and the records around it kept.
    const ReadResult r = read_all(dir / "bad.json", InputLayout::Auto, true);
    EXPECT_EQ(r.records.size(), 2u) << c.record;
    ASSERT_EQ(r.bad.size(), 1u) << c.record;
    EXPECT_EQ(r.bad[0].record, 2);
    EXPECT_EQ(r.bad[0].message, err);
  }
  // Alpaca fields.
  write_text(dir / "alpaca.jsonl", R"({"instruction": "i", "output": "o"})"
                                   "\n"
                                   R"({"instruction": "i", "input": 3, "output": "o"})"
                                   "\n"
                                   R"({"instruction": "i", "output": "o", "history": [["q"]]})"
                                   "\n");
  const ReadResult r = read_all(dir / "alpaca.jsonl", InputLayout::Auto, true);
  ASSERT_EQ(r.bad.size(), 2u);
  EXPECT_NE(r.bad[0].message.find("line 2 (record 2): field 'input': expected a string, got a number 3"), std::string::npos)
      << r.bad[0].message;
  EXPECT_NE(r.bad[1].message.find("line 3 (record 3): field 'history[0]': expected a [query, answer] pair"), std::string::npos)
      << r.bad[1].message;
}

TEST(ConversationReader, BrokenJsonIsAnErrorWithItsPlace) {
  ScratchDir dir;
  const std::string good = R"({"id": "ok", "conversations": [{"from": "human", "value": "q"}]})";
  // Truncated in the middle of the third record.
  write_text(dir / "cut.json", "[" + good + ", " + good + ", {\"id\": \"x\", \"conv");
  std::string err = read_error(dir / "cut.json");
  EXPECT_NE(err.find("cut.json: invalid JSON in record 3 (byte 151): parse error at line 1, column 151"), std::string::npos) << err;
  write_text(dir / "cut.json", "[" + good + ", " + good + ", {\"id\": \"x\", ");
  err = read_error(dir / "cut.json");
  EXPECT_NE(err.find("invalid JSON in record 3"), std::string::npos) << err;
  EXPECT_NE(err.find("unexpected end of input"), std::string::npos) << err;
  // skip-bad cannot resynchronise inside a JSON array: still an error.
  EXPECT_THROW(read_all(dir / "cut.json", InputLayout::Auto, true), Error);
  // Trailing garbage after the array, and a file that is not a list.
  write_text(dir / "trail.json", "[" + good + "] x");
  EXPECT_NE(read_error(dir / "trail.json").find("invalid JSON"), std::string::npos);
  write_text(dir / "scalar.json", "42");
  EXPECT_NE(read_error(dir / "scalar.json").find("expected a JSON array of records"), std::string::npos) << read_error(dir / "scalar.json");
  write_text(dir / "empty.json", " \n");
  EXPECT_NE(read_error(dir / "empty.json").find("empty file"), std::string::npos);
  EXPECT_NE(read_error(dir / "missing.json").find("missing.json: cannot open"), std::string::npos);
  // A broken line of JSON Lines is a bad record: an error naming the line, or skipped.
  write_text(dir / "lines.jsonl", "\n" + good + "\n{\"id\": \"x\", \n" + good + "\n");
  err = read_error(dir / "lines.jsonl");
  EXPECT_NE(err.find("lines.jsonl: line 3 (record 2): invalid JSON"), std::string::npos) << err;
  const ReadResult r = read_all(dir / "lines.jsonl", InputLayout::Auto, true);
  EXPECT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.bad.size(), 1u);
  // Records that fit neither layout.
  write_text(dir / "neither.json", R"([{"prompt": "plain"}])");
  EXPECT_NE(read_error(dir / "neither.json").find("record 1: neither the BELLE layout"), std::string::npos)
      << read_error(dir / "neither.json");
}

// A record is handed on as soon as it is complete, before the rest of the file exists: the input is
// streamed, never read whole. A named pipe holds back the second record until the first is seen.
TEST(ConversationReader, HandsOnRecordsBeforeTheRestOfTheFileIsWritten) {
  const std::string good = R"({"id": "ok", "conversations": [{"from": "human", "value": "q"}]})";
  for (bool lines : {false, true}) {
    ScratchDir dir;
    const std::string fifo = dir / "pipe";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::atomic<bool> first_seen{false}, rest_written{false};
    std::thread writer([&] {
      std::ofstream out(fifo, std::ios::binary);  // opens once the reader does
      out << (lines ? "\n" + good + "\n" : "[" + good + ",") << std::flush;
      for (int i = 0; i < 1000 && !first_seen; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      rest_written = true;
      out << (lines ? good + "\n" : good + "]") << std::flush;
    });
    int records = 0;
    bool first_before_rest = false;
    try {
      ConversationReader reader(fifo, InputLayout::Auto);
      reader.read([&](Conversation&&) {
        if (++records == 1) {
          first_before_rest = !rest_written;
          first_seen = true;
        }
      });
      EXPECT_EQ(reader.json_lines(), lines);
      EXPECT_EQ(reader.file_size(), 0u);  // unknown for a pipe
    } catch (...) {
      first_seen = true;
      writer.join();
      throw;
    }
    writer.join();
    EXPECT_EQ(records, 2) << (lines ? "JSON Lines" : "JSON array");
    EXPECT_TRUE(first_before_rest) << (lines ? "JSON Lines" : "JSON array") << ": the first record waited for the rest";
  }
}

TEST(ConversationReader, LayoutComesFromTheFirstGoodRecord) {
  ScratchDir dir;
  write_text(dir / "mixed.json", R"([{"x": 1}, {"instruction": "i", "output": "o"}, {"conversations": [{"from": "human", "value": "v"}]}])");
  const ReadResult r = read_all(dir / "mixed.json", InputLayout::Auto, true);
  EXPECT_EQ(r.layout, InputLayout::Alpaca);
  ASSERT_EQ(r.records.size(), 1u);
  ASSERT_EQ(r.bad.size(), 2u);
  EXPECT_NE(r.bad[1].message.find("record 3: field 'instruction': missing"), std::string::npos) << r.bad[1].message;
}

// ---- Labels ---------------------------------------------------------------------------------------

class Labels : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED(testing::tokenizer_path());
    static Tokenizer t = Tokenizer::from_file(testing::tokenizer_path());
    tok_ = &t;
  }
  const Tokenizer* tok_ = nullptr;
};

std::vector<int32_t> join(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST_F(Labels, HumanTurnsAreMaskedAssistantTurnsAreLearnt) {
  const Conversation c{"id", {{"human", "你好"}, {"gpt", "你好！有什么可以帮你？"}, {"human", "再见"}, {"bot", "再见。"}}};
  const auto q1 = tok_->encode("你好"), a1 = tok_->encode("你好！有什么可以帮你？"), q2 = tok_->encode("再见"),
             a2 = tok_->encode("再见。");
  ASSERT_FALSE(q1.empty() || a1.empty() || q2.empty() || a2.empty());
  const auto ignore = [](size_t n) { return std::vector<int32_t>(n, -100); };
  const auto full_input = join({{195}, q1, {196}, a1, {195}, q2, {196}, a2, {2}});
  const auto full_labels = join({{2}, ignore(q1.size()), {-100}, a1, {2}, ignore(q2.size()), {-100}, a2, {2}});
  ASSERT_EQ(full_input.size(), full_labels.size());
  const auto n = static_cast<int64_t>(full_input.size());

  train::LabelledRow row;
  // Room to spare: padded with 0 / -100.
  train::label_conversation(*tok_, c, n + 5, row);
  EXPECT_EQ(row.input_ids, join({full_input, {0, 0, 0, 0, 0}}));
  EXPECT_EQ(row.labels, join({full_labels, ignore(5)}));
  EXPECT_FALSE(row.truncated());
  EXPECT_EQ(row.full_length, n);
  EXPECT_EQ(row.tokens(), n);
  EXPECT_EQ(row.label_tokens(), static_cast<int64_t>(a1.size() + a2.size() + 2));  // labels[0] (EOS) is not trained
  // Exactly full, then cut from the right.
  train::label_conversation(*tok_, c, n, row);
  EXPECT_EQ(row.input_ids, full_input);
  EXPECT_FALSE(row.truncated());
  train::label_conversation(*tok_, c, 4, row);
  EXPECT_EQ(row.input_ids, std::vector<int32_t>(full_input.begin(), full_input.begin() + 4));
  EXPECT_EQ(row.labels, std::vector<int32_t>(full_labels.begin(), full_labels.begin() + 4));
  EXPECT_TRUE(row.truncated());
  // No turns at all: the official script still makes a row (EOS only, nothing to learn).
  train::label_conversation(*tok_, Conversation{"e", {}}, 3, row);
  EXPECT_EQ(row.input_ids, (std::vector<int32_t>{2, 0, 0}));
  EXPECT_EQ(row.labels, (std::vector<int32_t>{2, -100, -100}));
  EXPECT_EQ(row.label_tokens(), 0);
  // Special-token text inside a value becomes the special id, as the HF tokenizer does.
  const Conversation special{"s", {{"human", "</s>"}}};
  train::label_conversation(*tok_, special, 4, row);
  EXPECT_EQ(row.input_ids, (std::vector<int32_t>{195, 2, 2, 0}));
  EXPECT_EQ(row.labels, (std::vector<int32_t>{2, -100, 2, -100}));
}

TEST_F(Labels, TextRowsLearnEveryTokenThenEos) {
  const std::string text = "床前明月光，\n疑是地上霜。";
  const auto ids = tok_->encode(text);
  ASSERT_GE(ids.size(), 3u);
  const auto n = static_cast<int64_t>(ids.size()) + 1;
  train::LabelledRow row;
  train::label_text(*tok_, text, n + 2, row);
  EXPECT_EQ(row.input_ids, join({ids, {2, 0, 0}}));
  EXPECT_EQ(row.labels, join({ids, {2, -100, -100}}));
  EXPECT_EQ(row.full_length, n);
  EXPECT_EQ(row.tokens(), n);
  EXPECT_EQ(row.label_tokens(), n - 1);  // every token but the first is predicted
  train::label_text(*tok_, text, 2, row);
  EXPECT_EQ(row.input_ids, std::vector<int32_t>(ids.begin(), ids.begin() + 2));
  EXPECT_EQ(row.labels, row.input_ids);
  EXPECT_TRUE(row.truncated());
  // Row length 0: the whole record, for packing.
  train::label_text(*tok_, text, 0, row);
  EXPECT_EQ(row.input_ids, join({ids, {2}}));
  EXPECT_EQ(row.labels, row.input_ids);
}

}  // namespace
}  // namespace baichuan
