#include "generate/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace baichuan {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Generator::Generator(Model& model, ThreadPool& pool, int64_t context)
    : model_(model), pool_(pool), cache_(model.new_cache(context)) {}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                   const TokenCallback& on_token) {
  options.sampling.validate();
  if (prompt.empty()) fail("the prompt is empty: nothing to continue from");
  if (static_cast<int64_t>(prompt.size()) > cache_.capacity())
    fail("the prompt has ", prompt.size(), " tokens, more than the context of ", cache_.capacity(),
         " tokens (use a larger --ctx or a shorter prompt)");
  if (options.max_new_tokens < 0) fail("max_new_tokens must be >= 0, got ", options.max_new_tokens);

  GenerateResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  // Reuse the longest cached prefix, but always feed at least one token to get fresh logits.
  size_t common = 0;
  while (common < cached_ids_.size() && common < prompt.size() && cached_ids_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  cache_.truncate(static_cast<int64_t>(common));
  cached_ids_.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(common));
  result.reused_prompt_tokens = static_cast<int64_t>(common);

  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = model_.forward_last(cache_, prompt.subspan(common), pool_);
  cached_ids_.insert(cached_ids_.end(), prompt.begin() + static_cast<std::ptrdiff_t>(common), prompt.end());
  result.prompt_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();

  std::vector<int32_t> seen(prompt.begin(), prompt.end());
  Sampler sampler(options.sampling);
  StreamDecoder decoder(model_.tokenizer());
  const int32_t eos = model_.generation().eos_token_id;
  result.finish_reason = "length";
  bool hit_stop_string = false;
  for (int64_t n = 0; n < options.max_new_tokens; ++n) {
    int32_t id = sampler.next(logits, seen);
    if (id == eos && !options.ignore_eos) {
      result.finish_reason = "stop";
      break;
    }
    result.tokens.push_back(id);
    seen.push_back(id);
    std::string piece = decoder.push(id);
    result.text += piece;
    if (on_token && !on_token(id, piece)) {
      result.finish_reason = "cancelled";
      break;
    }
    for (const auto& s : options.stop) {
      auto at = s.empty() ? std::string::npos : result.text.find(s);
      if (at != std::string::npos) {
        result.text.resize(at);
        hit_stop_string = true;
      }
    }
    if (hit_stop_string) {
      result.finish_reason = "stop";
      break;
    }
    if (n + 1 == options.max_new_tokens) break;
    if (cache_.size() >= cache_.capacity()) break;  // context full: finish with "length"
    logits = model_.forward_last(cache_, std::span<const int32_t>(&id, 1), pool_);
    cached_ids_.push_back(id);
  }
  if (!hit_stop_string) {
    std::string tail = decoder.flush();
    result.text += tail;
    if (on_token && !tail.empty()) on_token(-1, tail);
  }
  result.generate_seconds = seconds_since(start);
  return result;
}

}  // namespace baichuan
