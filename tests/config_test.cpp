// config.json and generation_config.json: the real release configs, the family rule, and the errors.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "model/config.h"
#include "shared_data.h"

namespace baichuan {
namespace config_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;
using testing::shared_path;

// The message parsing `json` as config.json gives, "" when it parses.
std::string error_of(const std::string& json) {
  return baichuan::testing::error_message_of([&] { parse_model_config(json, "config.json"); }, "");
}

TEST(Config, RealReleaseConfigsGiveTheRightFamilyAndShape) {
  std::string chat13 = shared_path("assets/baichuan2/configs/Baichuan2-13B-Chat/config.json");
  std::string base7 = shared_path("assets/baichuan2/configs/reconstructed/Baichuan2-7B-Base.config.json");
  REQUIRE_SHARED(chat13);
  REQUIRE_SHARED(base7);
  ModelConfig c13 = parse_model_config(read_text_file(chat13), chat13);
  EXPECT_EQ(c13.position, PositionEncoding::Alibi);
  EXPECT_EQ(c13.num_layers, 40);
  EXPECT_EQ(c13.hidden_size, 5120);
  EXPECT_EQ(c13.intermediate_size, 13696);
  EXPECT_EQ(c13.head_dim(), 128);
  EXPECT_EQ(c13.model_max_length, 4096);
  ModelConfig c7 = parse_model_config(read_text_file(base7), base7);
  EXPECT_EQ(c7.position, PositionEncoding::Rope);
  EXPECT_EQ(c7.num_layers, 32);
  EXPECT_EQ(c7.hidden_size, 4096);
  // The explicit override wins.
  EXPECT_EQ(parse_model_config(read_text_file(base7), base7, PositionEncoding::Alibi).position, PositionEncoding::Alibi);

  std::string gen = shared_path("assets/baichuan2/configs/Baichuan2-13B-Chat/generation_config.json");
  GenerationConfig g = parse_generation_config(read_text_file(gen), gen);
  EXPECT_EQ(g.max_new_tokens, 2048);
  EXPECT_FLOAT_EQ(g.temperature, 0.3f);
  EXPECT_EQ(g.top_k, 5);
  EXPECT_FLOAT_EQ(g.top_p, 0.85f);
  EXPECT_FLOAT_EQ(g.repetition_penalty, 1.05f);
  EXPECT_TRUE(g.do_sample);
  EXPECT_EQ(g.user_token_id, 195);
  EXPECT_EQ(g.assistant_token_id, 196);
}

TEST(Config, ErrorsNameTheFileAndField) {
  const std::string ok = R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16,
                             "num_attention_heads": 2, "num_hidden_layers": 1})";
  EXPECT_EQ(error_of(ok), "");
  EXPECT_NE(error_of("{").find("config.json: invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1]").find("config.json: not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"vocab_size": 100})").find("missing field 'hidden_size'"), std::string::npos);
  EXPECT_NE(error_of(R"({"vocab_size": "many", "hidden_size": 8})").find("'vocab_size' must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"vocab_size": 100, "hidden_size": 9, "intermediate_size": 16, "num_attention_heads": 2,
                         "num_hidden_layers": 1})").find("not divisible"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 0, "num_attention_heads": 2,
                         "num_hidden_layers": 1})").find("intermediate_size must be positive"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                         "num_hidden_layers": 1, "eos_token_id": 100})").find("outside the vocabulary"),
            std::string::npos);
  EXPECT_THROW(parse_generation_config(R"({"do_sample": "yes"})", "g.json"), Error);
  EXPECT_THROW(parse_generation_config(R"({"max_new_tokens": -1})", "g.json"), Error);
  // A token id that does not fit int32 is refused as stated, not wrapped into the vocabulary's range
  // (4294967297 would wrap to 1; found by fuzz_model_config).
  EXPECT_NE(error_of(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                         "num_hidden_layers": 1, "bos_token_id": 4294967297})")
                .find("field 'bos_token_id' is 4294967297, not a token id"),
            std::string::npos);
  EXPECT_THAT([] { parse_generation_config(R"({"assistant_token_id": 1933333333336})", "g.json"); },
              throws_error("g.json: field 'assistant_token_id' is 1933333333336, not a token id"));
}

// Crafted sizes are refused by a limit before they size anything, naming the field and value; float
// parameters that would give NaN or constant logits, and fields Baichuan 2 does not support, too.
TEST(Config, CraftedSizesAndUnsupportedFieldsAreRefusedByName) {
  auto with = [](const std::string& extra) {
    return error_of(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                        "num_hidden_layers": 1, "max_position_embeddings": 64)" + extra + "}");
  };
  EXPECT_EQ(with(""), "");
  auto huge_layers = error_of(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16,
                                  "num_attention_heads": 2, "num_hidden_layers": 2147483647})");
  EXPECT_NE(huge_layers.find("config.json: num_hidden_layers is 2147483647, more than the supported"), std::string::npos)
      << huge_layers;
  EXPECT_NE(with(R"(, "model_max_length": 4000000000)").find("model_max_length is 4000000000"), std::string::npos);
  EXPECT_NE(with(R"(, "rms_norm_eps": 0)").find("rms_norm_eps must be a positive finite number"), std::string::npos);
  EXPECT_NE(with(R"(, "rms_norm_eps": 1e999)").find("invalid JSON"), std::string::npos);  // JSON has no inf
  EXPECT_NE(with(R"(, "rms_norm_eps": -1e-6)").find("rms_norm_eps"), std::string::npos);
  EXPECT_NE(with(R"(, "hidden_act": "gelu")").find("hidden_act \"gelu\" is not supported"), std::string::npos);
  EXPECT_EQ(with(R"(, "hidden_act": "silu", "tie_word_embeddings": false)"), "");
  EXPECT_NE(with(R"(, "tie_word_embeddings": true)").find("tie_word_embeddings true is not supported"),
            std::string::npos);

  ModelConfig c = parse_model_config(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16,
                                         "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 64})",
                                     "config.json");
  ConfigFieldNames gguf;
  gguf.rope_theta = "baichuan.rope.freq_base";
  for (float bad : {0.0f, -1.0f, std::nanf(""), INFINITY}) {
    c.rope_theta = bad;
    EXPECT_THAT([&] { c.validate("m.gguf", gguf); },
                throws_error("m.gguf: baichuan.rope.freq_base must be a positive finite number"))
        << "rope_theta " << bad;
  }
}

}  // namespace
}  // namespace baichuan
