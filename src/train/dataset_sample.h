// One supervised fine-tuning sample: a conversation and the input_ids / labels row the official
// Baichuan 2 fine-tune script (fine-tune.py, SupervisedDataset.preprocessing) builds from it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace baichuan::train {

inline constexpr int32_t kUserToken = 195;       // <reserved_106>, before a human turn
inline constexpr int32_t kAssistantToken = 196;  // <reserved_107>, before any other turn
inline constexpr int32_t kIgnoreIndex = -100;    // a label the loss skips
inline constexpr int32_t kPadId = 0;             // input padding (the attention mask is input_ids != 0)

struct Turn {
  std::string from;  // "human" is the user; anything else ("gpt", "assistant", ...) is the assistant
  std::string value;
};

struct Conversation {
  std::string id;
  std::vector<Turn> turns;
};

// A row of `row_length` input ids and labels, with what the summary counts.
struct LabelledRow {
  std::vector<int32_t> input_ids, labels;
  int64_t full_length = 0;  // tokens before the cut to row_length
  bool truncated() const { return full_length > static_cast<int64_t>(input_ids.size()); }
  int64_t tokens() const;        // input tokens that are not padding
  int64_t label_tokens() const;  // positions t >= 1 with labels[t] != -100: what the loss trains on
};

// A human turn adds 195 + ids to the input and EOS + -100 x len(ids) to the labels; any other turn
// adds 196 + ids and -100 + ids; then EOS ends both. Both are cut to row_length from the right and
// padded (input 0, labels -100). Ids are SentencePiece ids without BOS.
void label_conversation(const Tokenizer& tokenizer, const Conversation& conversation, int64_t row_length,
                        LabelledRow& row);

// The counts of LabelledRow for a stored row (any of the dataset formats).
int64_t count_tokens(std::span<const int32_t> input_ids);
int64_t count_label_tokens(std::span<const int32_t> labels);

}  // namespace baichuan::train
