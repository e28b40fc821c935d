// The per-tensor type policy of the output types: names, llama.cpp file types, the Q4_K_M / Q5_K_M
// mixes as llama.cpp's quantizer chooses them for Baichuan 2, and the fallbacks for short rows.
#include <gtest/gtest.h>

#include <set>

#include "convert/quant_mix.h"
#include "core/error.h"
#include "error_matchers.h"
#include "model/checkpoint.h"

namespace baichuan {
namespace quant_mix_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;

ModelConfig shape(int64_t layers, int64_t hidden, int64_t ffn) {
  ModelConfig c;
  c.num_layers = layers, c.hidden_size = hidden, c.intermediate_size = ffn, c.num_heads = hidden / 128;
  return c;
}

DType type_of(const FileType& t, const std::string& name, const ModelConfig& c) {
  for (const auto& [n, s] : canonical_tensors(c))
    if (n == name) return tensor_type_for(t, n, s, c);
  ADD_FAILURE() << "no tensor " << name;
  return DType::F32;
}

TEST(QuantMix, ParsesEveryNameInAnyCase) {
  EXPECT_EQ(parse_file_type("q4_0"), FileType(DType::Q4_0));
  EXPECT_EQ(parse_file_type("F16"), FileType(DType::F16));
  EXPECT_EQ(parse_file_type("bf16"), FileType(DType::BF16));
  EXPECT_EQ(parse_file_type("Q6_K"), FileType(DType::Q6_K));
  EXPECT_EQ(parse_file_type("Q4_K_M"), FileType(DType::Q4_K, QuantMix::Q4_K_M));
  EXPECT_EQ(parse_file_type("q5_k_m"), FileType(DType::Q5_K, QuantMix::Q5_K_M));
  for (const char* name : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k",
                           "q4_k_m", "q5_k_m"})
    EXPECT_EQ(file_type_name(parse_file_type(name)), name);
  for (const char* bad : {"", "q3_k", "q4_k_s", "int4", "q4-0", "f16 "}) {
    EXPECT_THAT([&] { parse_file_type(bad); }, throws_error("q4_k_m")) << "'" << bad << "'";
  }
}

TEST(QuantMix, GeneralFileTypeIsLlamaCppsFtype) {
  EXPECT_EQ(llama_file_type(DType::F32), 0u);
  EXPECT_EQ(llama_file_type(DType::F16), 1u);
  EXPECT_EQ(llama_file_type(DType::Q4_0), 2u);
  EXPECT_EQ(llama_file_type(DType::Q4_1), 3u);
  EXPECT_EQ(llama_file_type(DType::Q8_0), 7u);
  EXPECT_EQ(llama_file_type(DType::Q5_0), 8u);
  EXPECT_EQ(llama_file_type(DType::Q5_1), 9u);
  EXPECT_EQ(llama_file_type(DType::Q6_K), 18u);
  EXPECT_EQ(llama_file_type(DType::BF16), 32u);
  EXPECT_EQ(llama_file_type(parse_file_type("q4_k_m")), 15u);
  EXPECT_EQ(llama_file_type(parse_file_type("q5_k_m")), 17u);
}

TEST(QuantMix, MoreBitsLayersOfSevenBAndThirteenB) {
  std::set<int64_t> got32, got40;
  for (int64_t i = 0; i < 32; ++i)
    if (uses_more_bits(i, 32)) got32.insert(i);
  for (int64_t i = 0; i < 40; ++i)
    if (uses_more_bits(i, 40)) got40.insert(i);
  EXPECT_EQ(got32, (std::set<int64_t>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}));
  EXPECT_EQ(got40, (std::set<int64_t>{0, 1, 2, 3, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 35, 36, 37, 38, 39}));
}

TEST(QuantMix, Q4KMOfSevenB) {
  ModelConfig c = shape(32, 4096, 11008);
  FileType t = parse_file_type("q4_k_m");
  EXPECT_EQ(type_of(t, "token_embd.weight", c), DType::Q4_K);
  EXPECT_EQ(type_of(t, "output.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "output_norm.weight", c), DType::F32);
  EXPECT_EQ(type_of(t, "blk.0.attn_norm.weight", c), DType::F32);
  EXPECT_EQ(type_of(t, "blk.0.attn_v.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.4.attn_v.weight", c), DType::Q4_K);
  EXPECT_EQ(type_of(t, "blk.6.attn_v.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.31.attn_v.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.27.ffn_down.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.26.ffn_down.weight", c), DType::Q4_K);
  // ffn_down rows are 11008 long: 43 K blocks; the fallback of Q4_K is Q5_0, of Q6_K is Q8_0.
  EXPECT_EQ(type_of(t, "blk.5.ffn_down.weight", c), DType::Q4_K);  // 11008 = 43 * 256
  for (const char* role : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
    for (int layer : {0, 6, 31}) EXPECT_EQ(type_of(t, "blk." + std::to_string(layer) + "." + role + ".weight", c), DType::Q4_K);
}

TEST(QuantMix, Q5KMOfThirteenB) {
  ModelConfig c = shape(40, 5120, 13696);
  FileType t = parse_file_type("q5_k_m");
  EXPECT_EQ(type_of(t, "token_embd.weight", c), DType::Q5_K);
  EXPECT_EQ(type_of(t, "output.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.4.attn_v.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.5.attn_v.weight", c), DType::Q5_K);
  EXPECT_EQ(type_of(t, "blk.7.attn_v.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(t, "blk.35.attn_q.weight", c), DType::Q5_K);
  // 13696 = 53.5 * 256: ffn_down falls back to Q8_0 (from Q6_K) or Q5_1 (from Q5_K), as llama.cpp does.
  EXPECT_EQ(type_of(t, "blk.0.ffn_down.weight", c), DType::Q8_0);
  EXPECT_EQ(type_of(t, "blk.5.ffn_down.weight", c), DType::Q5_1);
}

TEST(QuantMix, PureTypesAndFallbacks) {
  ModelConfig c = shape(2, 256, 704);  // 704 = 22 * 32, not whole K blocks
  EXPECT_EQ(type_of(DType::Q4_0, "output.weight", c), DType::Q4_0);
  EXPECT_EQ(type_of(DType::Q4_0, "blk.0.ffn_down.weight", c), DType::Q4_0);
  EXPECT_EQ(type_of(DType::Q4_K, "blk.0.ffn_down.weight", c), DType::Q5_0);
  EXPECT_EQ(type_of(DType::Q5_K, "blk.0.ffn_down.weight", c), DType::Q5_1);
  EXPECT_EQ(type_of(DType::Q6_K, "blk.0.ffn_down.weight", c), DType::Q8_0);
  EXPECT_EQ(type_of(DType::Q6_K, "blk.0.ffn_up.weight", c), DType::Q6_K);
  EXPECT_EQ(type_of(DType::F16, "output.weight", c), DType::F16);
  EXPECT_EQ(type_of(DType::BF16, "blk.1.attn_norm.weight", c), DType::F32);
  // Rows of 88 are not whole blocks of 32 either: F16.
  ModelConfig odd = shape(2, 256, 88);
  EXPECT_EQ(type_of(DType::Q4_K, "blk.0.ffn_down.weight", odd), DType::F16);
  EXPECT_EQ(type_of(DType::Q8_0, "blk.0.ffn_down.weight", odd), DType::F16);
  EXPECT_EQ(type_of(parse_file_type("q4_k_m"), "blk.0.ffn_down.weight", odd), DType::F16);
  // Rows of 64 (hidden 64): the mixes' head becomes Q8_0, as llama.cpp does for rows that are not K blocks.
  ModelConfig narrow = shape(2, 128, 256);
  narrow.hidden_size = 64, narrow.num_heads = 1;
  EXPECT_EQ(type_of(parse_file_type("q4_k_m"), "output.weight", narrow), DType::Q8_0);
  EXPECT_EQ(type_of(parse_file_type("q4_k_m"), "token_embd.weight", narrow), DType::Q5_0);
  EXPECT_EQ(type_of(parse_file_type("q5_k_m"), "blk.1.attn_v.weight", narrow), DType::Q8_0);
  EXPECT_EQ(type_of(parse_file_type("q5_k_m"), "blk.1.ffn_down.weight", narrow), DType::Q6_K);  // rows of 256
  EXPECT_EQ(type_of(parse_file_type("q5_k_m"), "blk.0.ffn_down.weight", narrow), DType::Q5_K);  // of 2 layers, only the last
}

}  // namespace
}  // namespace baichuan
