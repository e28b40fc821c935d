// One sequence generated with the whole machine: the decode loop of `generate` and `chat`. The KV
// cache persists across calls, so a prompt that continues the previous one (a chat turn) computes
// only its new tokens. A Generator is one caller: it owns its forward scratch (ModelContext) and
// uses its own pool; several Generators may share one Model from different threads.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "generate/decoding.h"
#include "model/model.h"
#include "model/model_context.h"

namespace baichuan {

class Generator {
 public:
  Generator(const Model& model, ThreadPool& pool, int64_t context);

  // `prompt_chunk` > 0 feeds the prompt's new tokens at most that many per step (see Decoding).
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const TokenCallback& on_token = {}, int64_t prompt_chunk = 0);
  int64_t context() const { return sequence_.cache.capacity(); }
  // The ids whose keys and values are in the cache (prompt + generated so far).
  const std::vector<int32_t>& cached_ids() const { return sequence_.ids; }

 private:
  const Model& model_;
  ThreadPool& pool_;
  ModelContext context_;
  CachedSequence sequence_;
};

}  // namespace baichuan
