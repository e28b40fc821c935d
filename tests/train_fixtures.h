// Small training shapes and records shared by the training engine's tests.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "train/train_model.h"

namespace baichuan::train::train_fixtures {

// Two layers of the given sizes.
inline TrainShape small_shape(PositionEncoding position, int64_t vocab, int64_t hidden, int64_t heads, int64_t ffn) {
  TrainShape s;
  s.position = position;
  s.vocab = vocab;
  s.hidden = hidden;
  s.heads = heads;
  s.ffn = ffn;
  s.layers = 2;
  return s;
}

// The config.json of a training shape: what adapters and checkpoints built from it are checked against.
inline ModelConfig config_of_shape(const TrainShape& s) {
  ModelConfig c;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.ffn;
  c.num_heads = s.heads;
  c.num_layers = s.layers;
  c.position = s.position;
  c.rms_norm_eps = s.rms_norm_eps;
  return c;
}

// `count` records of `len` tokens as the official preprocessing lays them out: a 2-token prompt whose
// labels are -100, an answer, right padding with id 0 and label -100 (record r has r * pad_step pad
// tokens, at most len - 3).
inline std::vector<Record> padded_records(int64_t count, int64_t len, int64_t vocab, uint64_t seed, int64_t pad_step = 2) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(1, static_cast<int32_t>(vocab - 1));
  std::vector<Record> out;
  for (int64_t r = 0; r < count; ++r) {
    Record rec;
    const int64_t pad = std::min<int64_t>(pad_step * r, len - 3), prompt = 2;
    for (int64_t t = 0; t < len; ++t) {
      const bool is_pad = t >= len - pad;
      const int32_t id = is_pad ? 0 : token(rng);
      rec.input_ids.push_back(id);
      rec.labels.push_back(is_pad || t < prompt ? -100 : id);
    }
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace baichuan::train::train_fixtures
