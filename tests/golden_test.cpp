// End-to-end: every reference checkpoint, in every format and after GGUF round trips, against the
// golden outputs of the official modeling code (../shared/reference/README.md).
#include <gtest/gtest.h>

#include <iostream>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "convert/gguf_convert.h"
#include "core/mapped_file.h"
#include "generate/chat_prompt.h"
#include "generate/generator.h"
#include "generate/sampling.h"
#include "golden.h"
#include "greedy.h"
#include "model/gguf_checkpoint.h"
#include "model/model.h"
#include "shared_data.h"
#include "test_files.h"
#include "tokenizer/chat_template.h"

namespace baichuan {
namespace golden_test {  // named, not anonymous: the tests compile as a unity build

using nlohmann::json;
using testing::shared_path;

struct Case {
  std::string name;    // test name suffix
  std::string folder;  // reference folder with golden.json
  std::string model;   // path relative to reference/
  std::string gguf_type;  // "" = read as is; else convert to GGUF of this type first
  // Convert with the head stored raw (`convert --raw-head`): lossless in F16/BF16. The default
  // normalised head is exact only in F32 (F16 rounding of unit rows moves logits by ~2e-4).
  bool raw_head = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Golden : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    dir_ = shared_path("reference/" + c.folder);
    REQUIRE_SHARED(testing::golden_json_path(dir_));
    golden_ = testing::read_golden(dir_);
    std::string path = shared_path("reference/" + c.model);
    if (!c.gguf_type.empty()) {
      auto out = std::filesystem::path(testing::temp_path("golden", c.name + ".gguf"));
      ConvertOptions options;
      options.type = c.gguf_type == "f32" ? DType::F32 : c.gguf_type == "f16" ? DType::F16 : DType::BF16;
      options.normalize_head = !c.raw_head;
      write_gguf_checkpoint(open_checkpoint(path), out.string(), options);
      path = out.string();
    }
    model_ = load_model(path);
    model_->set_kv_type(DType::F32);  // the exact path; the default F16 cache is checked separately
  }

  std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int64_t n) {
    return testing::greedy_tokens(*model_, pool_, prompt, static_cast<size_t>(n));
  }

  std::string dir_;
  json golden_;
  std::unique_ptr<Model> model_;
  ModelContext context_;
  ThreadPool pool_{2};
};

TEST_P(Golden, PromptIdsLogitsAndGreedyTokens) {
  for (const auto& p : golden_["prompts"]) {
    SCOPED_TRACE(p["text"].get<std::string>().substr(0, 40));
    auto ids = model_->tokenizer().encode(p["text"].get<std::string>());
    ASSERT_EQ(ids, p["ids"].get<std::vector<int32_t>>());

    KvCache cache = model_->new_cache(static_cast<int64_t>(ids.size()));
    auto logits = model_->forward_last(context_, cache, ids, pool_);
    auto expected = testing::golden_last_logits(dir_, p);
    ASSERT_EQ(logits.size(), expected.size());
    EXPECT_LE(testing::max_relative_error(logits, expected), 1e-5);

    auto golden_greedy = p["greedy"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy(ids, static_cast<int64_t>(golden_greedy.size())), golden_greedy);
  }
}

// The default F16 KV cache (as llama.cpp's) rounds keys and values to 11 significant bits: logits
// move by about 1e-4 of their range, greedy tokens stay the official ones on these checkpoints.
TEST_P(Golden, DefaultF16CacheStaysClose) {
  model_->set_kv_type(DType::F16);
  double worst = 0;
  for (const auto& p : golden_["prompts"]) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    KvCache cache = model_->new_cache(static_cast<int64_t>(ids.size()));
    auto logits = model_->forward_last(context_, cache, ids, pool_);
    worst = std::max(worst, testing::max_relative_error(logits, testing::golden_last_logits(dir_, p)));
    auto golden_greedy = p["greedy"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy(ids, static_cast<int64_t>(golden_greedy.size())), golden_greedy);
  }
  std::cout << "F16 KV cache: worst relative logit error " << worst << "\n";
  EXPECT_LE(worst, 1e-3);
  model_->set_kv_type(DType::F32);
}

TEST_P(Golden, TopLogitsAtEveryPosition) {
  for (const auto& p : golden_["prompts"]) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    KvCache cache = model_->new_cache(static_cast<int64_t>(ids.size()));
    std::vector<float> logits;
    SequenceStep step{&cache, ids, true, &logits};
    model_->forward(context_, std::span<SequenceStep>(&step, 1), pool_);
    const int64_t V = model_->config().vocab_size;
    const auto& top = p["top8_per_position"];
    ASSERT_EQ(top.size(), ids.size());
    for (size_t t = 0; t < ids.size(); ++t) {
      float scale = std::abs(top[t][0][1].get<float>());
      for (const auto& entry : top[t]) {
        auto id = entry[0].get<int64_t>();
        EXPECT_NEAR(logits[static_cast<size_t>(static_cast<int64_t>(t) * V + id)], entry[1].get<float>(), 1e-5f * scale * 4)
            << "position " << t << " id " << id;
      }
    }
  }
}

TEST_P(Golden, SamplingDistributions) {
  for (const auto& p : golden_["prompts"]) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    KvCache cache = model_->new_cache(static_cast<int64_t>(ids.size()));
    auto logits = model_->forward_last(context_, cache, ids, pool_);
    for (const auto& s : p["sampling"]) {
      SamplingParams params;
      params.repetition_penalty = s["repetition_penalty"].get<float>();
      params.temperature = s["temperature"].get<float>();
      params.top_k = s["top_k"].get<int64_t>();
      params.top_p = s["top_p"].get<float>();
      auto kept = kept_distribution(logits, ids, params);
      const auto& expected = s["kept"];
      ASSERT_EQ(kept.size(), expected.size()) << s.dump();
      // Same kept set and probabilities; tokens of equal probability may come in either order.
      std::map<int32_t, float> ours(kept.begin(), kept.end());
      for (const auto& e : expected) {
        auto it = ours.find(e[0].get<int32_t>());
        ASSERT_NE(it, ours.end()) << "token " << e[0] << " should be kept: " << s.dump();
        EXPECT_NEAR(it->second, e[1].get<float>(), 1e-5f);
      }
    }
  }
}

TEST_P(Golden, ChatIdsAndGreedyAnswers) {
  for (const auto& c : golden_["chats"]) {
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    auto ids = build_chat_input(model_->tokenizer(), messages, chat_template_config(*model_));
    ASSERT_EQ(ids, c["ids"].get<std::vector<int32_t>>());
    auto golden_greedy = c["greedy"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy(ids, static_cast<int64_t>(golden_greedy.size())), golden_greedy);
  }
}

TEST_P(Golden, BatchedSequencesMatchSingleOnes) {
  // Two prompts of different lengths in one forward step give the same logits as alone.
  const auto& prompts = golden_["prompts"];
  auto a = prompts[0]["ids"].get<std::vector<int32_t>>();
  auto b = prompts[2]["ids"].get<std::vector<int32_t>>();
  KvCache ca = model_->new_cache(64), cb = model_->new_cache(64);
  std::vector<float> la, lb;
  std::vector<SequenceStep> steps = {{&ca, a, false, &la}, {&cb, b, false, &lb}};
  model_->forward(context_, steps, pool_);
  KvCache c1 = model_->new_cache(64);
  auto alone = model_->forward_last(context_, c1, b, pool_);
  for (size_t i = 0; i < alone.size(); i += 97) EXPECT_NEAR(lb[i], alone[i], 1e-5f);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

const std::vector<Case> kCases = {
    Case{"HfSafetensors7B", "b2-7b-tiny", "b2-7b-tiny", ""},
    Case{"HfTorchBin13B", "b2-13b-tiny", "b2-13b-tiny", ""},
    Case{"MindSporeCkpt7B", "b2-7b-tiny-mindspore", "b2-7b-tiny-mindspore/baichuan2_7b_tiny.ckpt", ""},
    Case{"Gguf7B_F16", "b2-7b-tiny", "b2-7b-tiny", "f16", true},
    Case{"Gguf13B_BF16", "b2-13b-tiny", "b2-13b-tiny", "bf16", true},
    // The official 4-bit Chat layout (bitsandbytes NF4 in pytorch_model.bin), dequantized bit-exactly.
    Case{"Nf4TorchBin7B", "b2-7b-tiny-4bits", "b2-7b-tiny-4bits", ""},
    // Made by llama.cpp's own converter: user-defined piece types lost, head raw, Q/K permuted.
    Case{"LlamaCppGguf7B", "b2-7b-tiny-llamacpp", "b2-7b-tiny-llamacpp/b2-7b-tiny-llamacpp-bf16.gguf", ""},
#ifndef BAICHUAN_SANITIZED_BUILD
    // The sanitizer build runs every reader and the GGUF writer once per architecture (above); these
    // other GGUF types go through the same code and cost ~8 s each under AddressSanitizer.
    Case{"Gguf7B_F32", "b2-7b-tiny", "b2-7b-tiny", "f32"},
    Case{"Gguf7B_BF16", "b2-7b-tiny", "b2-7b-tiny", "bf16", true},
    Case{"Gguf13B_F32", "b2-13b-tiny", "b2-13b-tiny", "f32"},
    Case{"Gguf13B_F16", "b2-13b-tiny", "b2-13b-tiny", "f16", true},
    Case{"GgufFromMindSpore7B_F32", "b2-7b-tiny-mindspore", "b2-7b-tiny-mindspore/baichuan2_7b_tiny.ckpt", "f32"},
#endif
};

INSTANTIATE_TEST_SUITE_P(Reference, Golden, ::testing::ValuesIn(kCases), case_name);

}  // namespace
}  // namespace baichuan
