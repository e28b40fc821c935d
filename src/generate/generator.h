// The decode loop: feed the prompt (reusing the cached prefix it shares with the previous call),
// then repeatedly sample, check the stop rules and stream the text out.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/thread_pool.h"
#include "generate/sampling.h"
#include "model/model.h"

namespace baichuan {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  bool ignore_eos = false;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop when the generated text contains one of these
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (an EOS that ended generation is not included)
  std::string text;
  std::string finish_reason;  // "stop" (EOS or a stop string), "length", or "cancelled"
  int64_t prompt_tokens = 0, reused_prompt_tokens = 0;
  double prompt_seconds = 0, generate_seconds = 0;
};

// Called with each new token and the text it completed (possibly empty while a UTF-8 character is
// still incomplete). Returning false cancels the generation.
using TokenCallback = std::function<bool(int32_t id, std::string_view text)>;

class Generator {
 public:
  Generator(Model& model, ThreadPool& pool, int64_t context);

  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const TokenCallback& on_token = {});
  int64_t context() const { return cache_.capacity(); }
  // The ids whose keys and values are in the cache (prompt + generated so far).
  const std::vector<int32_t>& cached_ids() const { return cached_ids_; }

 private:
  Model& model_;
  ThreadPool& pool_;
  KvCache cache_;
  std::vector<int32_t> cached_ids_;
};

}  // namespace baichuan
