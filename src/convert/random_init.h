// Random Baichuan 2 weights, for tests, benchmarks and the first-run demo (`baichuan init`): a GGUF
// written streaming and in parallel, the same seed giving the same file; and the random streams the
// other random layouts (init --format bnb-nf4) draw from.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "convert/quant_mix.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace baichuan {

class ThreadPool;

// An approximately normal N(0, 1) value from the splitmix64 stream `state`.
float approx_normal(uint64_t& state);
// FNV-1a of a tensor name: each tensor's stream is the seed xor this.
uint64_t hash_name(const std::string& s);
// Fills bytes [first, first + n) of a random stream fixed by `seed` (position-addressed, so any chunking
// gives the same bytes).
void fill_random_bytes(uint64_t seed, std::byte* out, size_t first, size_t n);

struct RandomGgufOptions {
  FileType type = DType::F16;  // block types get random blocks directly (no float detour)
  uint64_t seed = 1;
  float stddev = 0.02f;  // of the matrices; norms start at one
  std::string name;      // general.name
};

// Writes a GGUF of `config`'s shape with random weights, rows produced in parallel on `pool`.
void write_random_gguf(const std::string& path, const ModelConfig& config, const Tokenizer& tokenizer,
                       const std::string& generation_json, const RandomGgufOptions& options, ThreadPool& pool);

}  // namespace baichuan
