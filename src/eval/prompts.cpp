#include "eval/prompts.h"

#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace baichuan::eval {

namespace {

// "{q}\nA. {A}\nB. {B}\nC. {C}\nD. {D}" — the body every benchmark here shares.
std::string question_with_choices(const Question& q) {
  std::string s = q.question;
  for (size_t c = 0; c < 4; ++c) {
    s += '\n';
    s += static_cast<char>('A' + c);
    s += ". ";
    s += q.choices[c];
  }
  return s;
}

}  // namespace

std::string ceval_prompt(const Subject& subject, const Question& item, size_t shots) {
  std::string p = "以下是中国关于" + subject.display_name + "考试的单项选择题，请选出其中的正确答案。\n";
  for (size_t i = 0; i < std::min(shots, subject.shots.size()); ++i) {
    p += '\n';
    p += question_with_choices(subject.shots[i]);
    p += "\n答案：";
    p += subject.shots[i].answer;
  }
  p += '\n';
  p += question_with_choices(item);
  p += "\n答案：";
  return p;
}

std::string mmlu_prompt(const Subject& subject, const Question& item, size_t shots, const TokenCounter& count_tokens,
                        size_t max_tokens) {
  std::string spaced;  // Hendrycks' format_subject: " " before every word
  for (size_t start = 0; start <= subject.name.size();) {
    size_t end = subject.name.find('_', start);
    if (end == std::string::npos) end = subject.name.size();
    spaced += ' ';
    spaced.append(subject.name, start, end - start);
    start = end + 1;
  }
  const std::string header = "The following are multiple choice questions (with answers) about " + spaced + ".\n\n";
  const std::string end = question_with_choices(item) + "\nAnswer:";
  auto build = [&](size_t k) {
    std::string p = header;
    for (size_t i = 0; i < k; ++i) {
      p += question_with_choices(subject.shots[i]) + "\nAnswer: ";
      p += subject.shots[i].answer;
      p += "\n\n";
    }
    return p + end;
  };
  size_t k = std::min(shots, subject.shots.size());
  std::string p = build(k);
  while (k > 0 && count_tokens(p) > max_tokens) p = build(--k);
  return p;
}

std::string cmmlu_prompt(const Subject& subject, const Question& item, size_t shots) {
  std::string p = "以下是关于" + subject.display_name + "的单项选择题，请直接给出正确答案的选项。\n\n";
  for (size_t i = 0; i < std::min(shots, subject.shots.size()); ++i) {
    p += "题目：" + question_with_choices(subject.shots[i]) + "\n答案是：";
    p += subject.shots[i].answer;
    p += "\n\n";
  }
  return p + "题目：" + question_with_choices(item) + "\n答案是：";
}

std::array<int32_t, 4> choice_token_ids(const Tokenizer& tokenizer) {
  std::array<int32_t, 4> ids{-1, -1, -1, -1};
  const std::string letters = "ABCD";
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id)
    for (size_t c = 0; c < 4; ++c)
      if (ids[c] < 0 && tokenizer.type(id) == PieceType::Normal && tokenizer.piece(id) == letters.substr(c, 1))
        ids[c] = id;
  for (size_t c = 0; c < 4; ++c)
    if (ids[c] < 0) ids[c] = tokenizer.encode(letters.substr(c, 1)).at(0);
  return ids;
}

char choose_letter(const float* logits, const std::array<int32_t, 4>& ids) {
  size_t best = 0;
  for (size_t c = 1; c < 4; ++c)
    if (logits[ids[c]] > logits[ids[best]]) best = c;
  return static_cast<char>('A' + best);
}

}  // namespace baichuan::eval
