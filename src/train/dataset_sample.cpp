#include "train/dataset_sample.h"

#include <algorithm>

namespace baichuan::train {

int64_t count_tokens(std::span<const int32_t> input_ids) {
  return std::count_if(input_ids.begin(), input_ids.end(), [](int32_t id) { return id != kPadId; });
}

int64_t count_label_tokens(std::span<const int32_t> labels) {
  // labels[0] never takes part: the loss compares logits[t] with labels[t + 1].
  if (labels.empty()) return 0;
  return std::count_if(labels.begin() + 1, labels.end(), [](int32_t l) { return l != kIgnoreIndex; });
}

int64_t LabelledRow::tokens() const { return count_tokens(input_ids); }
int64_t LabelledRow::label_tokens() const { return count_label_tokens(labels); }

void label_conversation(const Tokenizer& tokenizer, const Conversation& conversation, int64_t row_length,
                        LabelledRow& row) {
  const int32_t eos = tokenizer.eos_id();
  auto& input = row.input_ids;
  auto& labels = row.labels;
  input.clear();
  labels.clear();
  for (const Turn& turn : conversation.turns) {
    const std::vector<int32_t> ids = tokenizer.encode(turn.value);
    if (turn.from == "human") {
      input.push_back(kUserToken);
      labels.push_back(eos);
      labels.insert(labels.end(), ids.size(), kIgnoreIndex);
    } else {
      input.push_back(kAssistantToken);
      labels.push_back(kIgnoreIndex);
      labels.insert(labels.end(), ids.begin(), ids.end());
    }
    input.insert(input.end(), ids.begin(), ids.end());
  }
  input.push_back(eos);
  labels.push_back(eos);
  row.full_length = static_cast<int64_t>(input.size());
  const auto n = static_cast<size_t>(row_length);
  input.resize(n, kPadId);  // cuts from the right or pads
  labels.resize(n, kIgnoreIndex);
}

}  // namespace baichuan::train
