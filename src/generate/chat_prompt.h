// The chat template settings of a loaded model: its model_max_length, its generation_config's
// max_new_tokens and user / assistant token ids. Shared by the CLI, the server and the binding.
#pragma once
#include "model/model.h"
#include "tokenizer/chat_template.h"

namespace baichuan {

inline ChatTemplateConfig chat_template_config(const Model& model) {
  ChatTemplateConfig t;
  t.model_max_length = model.config().model_max_length;
  t.max_new_tokens = model.generation().max_new_tokens;
  t.user_token_id = model.generation().user_token_id;
  t.assistant_token_id = model.generation().assistant_token_id;
  return t;
}

}  // namespace baichuan
