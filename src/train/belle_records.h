// Reads the conversations of a supervised fine-tuning data set one record at a time, so a file of any
// size is never in memory as a whole (memory is bounded by the largest record):
//   - BELLE chat layout (the official Baichuan 2 fine-tune data): {"id", "conversations": [{"from",
//     "value"}, ...]};
//   - Alpaca layout: {"instruction", "input", "output"[, "history": [[query, answer], ...]]}, read as
//     the history's turns, then a human turn instruction (+ "\n" + input when input is not empty) and
//     an assistant turn output;
//   - plain text for pre-training: {"text"[, "id"]}, read as one turn from "text" (no chat template);
// each as one JSON array of records or as JSON Lines (one record per line), told apart by the file's
// first character. The layout is read from the first record unless given.
#pragma once
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/dataset_sample.h"

namespace baichuan::train {

enum class InputLayout { Auto, Belle, Alpaca, Text };
InputLayout parse_input_layout(const std::string& name);  // "auto", "belle", "alpaca", "text"
const char* layout_name(InputLayout layout);

// A record that is not a conversation: which one, and why (the message names the file, the record
// and the field, e.g. "data.json: record 7 (id \"x\"): conversations[1].value: expected a string,
// got number 3").
struct BadRecord {
  int64_t record = 0;  // 1-based position in the file
  std::string message;
};

class ConversationReader {
 public:
  // Opens the file (throws Error naming it if it cannot be read) and looks at its first character.
  ConversationReader(std::string path, InputLayout layout);

  // Calls on_record for each record in file order. A record that is not a valid conversation throws
  // Error, or goes to on_bad (when given) and reading goes on. Broken JSON always throws, except for
  // a bad line of JSON Lines, which is a bad record like any other.
  void read(const std::function<void(Conversation&&)>& on_record,
            const std::function<void(const BadRecord&)>& on_bad = {});

  InputLayout layout() const { return layout_; }  // Auto until the first good record is seen
  bool json_lines() const { return json_lines_; }
  uint64_t bytes_read();  // how far reading has got, for progress
  uint64_t file_size() const { return file_size_; }  // 0 when unknown (a pipe)

 private:
  void read_array(const std::function<void(Conversation&&)>& on_record,
                  const std::function<void(const BadRecord&)>& on_bad);
  void read_lines(const std::function<void(Conversation&&)>& on_record,
                  const std::function<void(const BadRecord&)>& on_bad);
  // Turns one parsed record into a conversation, or reports it bad.
  void take(const nlohmann::json& record, int64_t number, const std::string& where,
            const std::function<void(Conversation&&)>& on_record,
            const std::function<void(const BadRecord&)>& on_bad);

  std::string path_;
  InputLayout layout_;
  std::ifstream in_;
  std::vector<char> buffer_;
  uint64_t file_size_ = 0;
  int64_t blank_lines_ = 0;  // before the first record
  bool json_lines_ = false;
};

// The conversation in one parsed record of the given layout (not Auto). Throws RecordError naming the
// field (as a path such as "conversations[1].value") when the record does not fit the layout.
struct RecordError : Error {
  RecordError(std::string field_path, std::string what_is_wrong)
      : Error(field_path + ": " + what_is_wrong), field(std::move(field_path)), problem(std::move(what_is_wrong)) {}
  std::string field, problem;
};
Conversation conversation_from_json(const nlohmann::json& record, InputLayout layout, int64_t number);
// The turn `from` of a Text record's single turn.
inline constexpr const char* kTextTurn = "text";
// The layout of a record: Belle if it has "conversations", Alpaca if it has "instruction", Text if it
// has "text".
InputLayout detect_layout(const nlohmann::json& record);

}  // namespace baichuan::train
