#include "generate/generator.h"

namespace baichuan {

Generator::Generator(const Model& model, ThreadPool& pool, int64_t context)
    : model_(model), pool_(pool), sequence_(model.new_cache(context)) {}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                   const TokenCallback& on_token, int64_t prompt_chunk) {
  Decoding decoding(model_, sequence_, prompt, options, prompt_chunk);
  while (!decoding.done()) decoding.step(context_, pool_, on_token);
  return decoding.result();
}

}  // namespace baichuan
