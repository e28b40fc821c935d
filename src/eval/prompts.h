// Few-shot prompts for the multiple-choice benchmarks, exactly as the official/Baichuan scripts build
// them, and how a multiple-choice answer is read off the model's logits.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "eval/benchmarks.h"

namespace baichuan {
class Tokenizer;
}

namespace baichuan::eval {

// C-Eval, as Baichuan's C-Eval script: header "以下是中国关于{display_name}考试的单项选择题，请选出其中的
// 正确答案。\n", then each shot as "\n{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：{answer}", then
// the item the same way ending in "答案：". The first `shots` shots in file order are used (Baichuan
// shuffled the dev set without a seed, so its order cannot be reproduced). GAOKAO and AGIEval use this
// too, with their Chinese exam names.
std::string ceval_prompt(const Subject& subject, const Question& item, size_t shots);

// MMLU, as Hendrycks' evaluate.py: "The following are multiple choice questions (with answers) about
// {subject}.\n\n" where every subject word gets a leading space (so "about  high school physics."),
// shots "{q}\nA. {A}\n...\nD. {D}\nAnswer: {X}\n\n", the item ending "Answer:". While the prompt has
// more than `max_tokens` tokens (as counted by `count_tokens`), shots are dropped from the end.
using TokenCounter = std::function<size_t(const std::string&)>;
std::string mmlu_prompt(const Subject& subject, const Question& item, size_t shots, const TokenCounter& count_tokens,
                        size_t max_tokens = 2048);

// CMMLU, as its official script: "以下是关于{中文名}的单项选择题，请直接给出正确答案的选项。\n\n", shots
// "题目：{q}\nA. {A}\n...\nD. {D}\n答案是：{X}\n\n", the item ending "答案是：".
std::string cmmlu_prompt(const Subject& subject, const Question& item, size_t shots);

// The token ids of the answers A, B, C, D as the next token after "答案：" / "Answer:": the id of the
// vocabulary piece "A" when there is one (Baichuan 2 has no dummy-prefix space, so that is also what
// encode("A") gives), else the first id of encode("A").
std::array<int32_t, 4> choice_token_ids(const Tokenizer& tokenizer);

// The letter whose token has the highest logit in `logits` (one row of vocab size); ties go to the
// earlier letter.
char choose_letter(const float* logits, const std::array<int32_t, 4>& ids);

}  // namespace baichuan::eval
