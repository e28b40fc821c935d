// Sliding-window perplexity (eval/perplexity.h) against a plain token-by-token re-implementation of
// Hugging Face's strided loop, and `baichuan perplexity` end to end: JSON output, --kl-base save and
// compare (same model, q8_0 KV cache, a q4_0 GGUF), mismatched bases and bad input.
#include "eval/perplexity.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "shared_data.h"

namespace baichuan {
namespace perplexity_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using nlohmann::json;
using testing::baichuan_cli;
using testing::CliRun;
using testing::shared_path;

std::string temp(const std::string& name) { return testing::temp_path("ppl", name); }

std::string write_file(const std::string& name, const std::string& text) {
  std::string path = temp(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The first `lines` lines of the Tang poems corpus.
std::string poems(int lines) {
  std::ifstream in(shared_path("data/corpus/quantangshi_tang_poems.txt"));
  std::string text, line;
  for (int i = 0; i < lines && std::getline(in, line); ++i) text += line + "\n";
  return text;
}

TEST(PerplexityWindows, FollowTheHuggingFaceLoop) {
  eval::PerplexityOptions o;
  o.ctx = 4;
  o.stride = 2;
  auto w = eval::perplexity_windows(10, o);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 4);
  EXPECT_EQ(w[0].first_scored, 1);  // nothing predicts token 0
  EXPECT_EQ(w[1].begin, 2);
  EXPECT_EQ(w[1].first_scored, 4);  // tokens 2, 3 are context: the previous window scored them
  EXPECT_EQ(w[3].end, 10);
  EXPECT_EQ(w[3].first_scored, 8);

  o.stride = 4;  // no overlap: each window's first token goes unscored, as in HF
  w = eval::perplexity_windows(10, o);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[1].first_scored, 5);
  EXPECT_EQ(w[2].begin, 8);
  EXPECT_EQ(w[2].first_scored, 9);
}

TEST(PerplexityWindows, RefuseBadOptions) {
  eval::PerplexityOptions o;
  o.ctx = 1;
  EXPECT_THROW(eval::perplexity_windows(10, o), Error);
  o.ctx = 8;
  o.stride = 0;
  EXPECT_THROW(eval::perplexity_windows(10, o), Error);
  o.stride = 9;
  EXPECT_THROW(eval::perplexity_windows(10, o), Error);
  o.stride = 8;
  EXPECT_THROW(eval::perplexity_windows(1, o), Error);
  EXPECT_NO_THROW(eval::perplexity_windows(2, o));
}

TEST(Perplexity, UniformLogitsGiveTheVocabularySize) {
  std::vector<float> logits(125696, 3.5f);
  double nll = eval::log_sum_exp(logits) - logits[7];
  EXPECT_NEAR(std::exp(nll), 125696.0, 1e-6 * 125696);
}

// Hugging Face's loop written out plainly, one forward_last per token with a fresh cache per window.
double reference_nll_sum(const Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride, ThreadPool& pool,
                         int64_t* scored) {
  const auto n = static_cast<int64_t>(ids.size());
  double sum = 0;
  *scored = 0;
  int64_t prev_end = 0;
  ModelContext context;
  for (int64_t begin = 0; begin < n; begin += stride) {
    int64_t end = std::min(begin + ctx, n);
    int64_t target_len = end - prev_end;  // labels before end - target_len are masked (-100)
    KvCache cache = model.new_cache(ctx);
    for (int64_t i = begin; i + 1 < end; ++i) {
      auto logits = model.forward_last(context, cache, std::span<const int32_t>(&ids[i], 1), pool);
      if (i + 1 < end - target_len) continue;
      double max = *std::max_element(logits.begin(), logits.end()), z = 0;
      for (float x : logits) z += std::exp(x - max);
      sum += max + std::log(z) - logits[ids[i + 1]];
      ++*scored;
    }
    prev_end = end;
    if (end == n) break;
  }
  return sum;
}

class PerplexityModel : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = shared_path("reference/b2-7b-tiny");
    REQUIRE_SHARED(path_ + "/model.safetensors");
    REQUIRE_SHARED(shared_path("data/corpus/quantangshi_tang_poems.txt"));
    model_ = load_model(path_);
    model_->set_kv_type(DType::F32);
  }
  std::string path_;
  std::unique_ptr<Model> model_;
  ThreadPool pool_{2};
};

TEST_F(PerplexityModel, MatchesTokenByTokenReference) {
  auto ids = model_->tokenizer().encode(poems(12));
  ASSERT_GE(ids.size(), 30u);
  ids.resize(23);  // not a multiple of any stride below
  struct Combo {
    int64_t ctx, stride, chunk;
  };
  for (Combo c : {Combo{8, 8, 512}, Combo{8, 3, 512}, Combo{16, 5, 3}, Combo{23, 23, 7}, Combo{4, 1, 512}}) {
    SCOPED_TRACE(::testing::Message() << "ctx " << c.ctx << " stride " << c.stride << " chunk " << c.chunk);
    int64_t scored = 0;
    double expected = reference_nll_sum(*model_, ids, c.ctx, c.stride, pool_, &scored);
    eval::PerplexityOptions o{c.ctx, c.stride, c.chunk};
    int64_t windows_seen = 0, tokens_seen = 0;
    auto r = eval::perplexity(
        *model_, ids, o, pool_, [&](const eval::WindowDone& d) { windows_seen = d.window; },
        [&](const eval::ScoredToken& t) { EXPECT_EQ(t.index, tokens_seen++); });
    EXPECT_EQ(r.tokens, scored);
    EXPECT_EQ(tokens_seen, scored);
    EXPECT_EQ(windows_seen, r.windows);
    EXPECT_NEAR(r.nll_sum, expected, 1e-4 * std::abs(expected));
    EXPECT_NEAR(r.perplexity, std::exp(expected / static_cast<double>(scored)), 1e-4 * r.perplexity);
  }
}

// The CLI: JSON, progress, --kl-base save/compare, mismatches and input errors.
TEST_F(PerplexityModel, CliJsonAndKlBase) {
#ifdef BAICHUAN_SANITIZED_BUILD
  // 16 s under AddressSanitizer; perplexity runs there in PerplexityModel.MatchesTokenByTokenReference.
  GTEST_SKIP() << "skipped in the sanitizer build: runs in the Release build";
#endif
  const std::string text = write_file("poems.txt", poems(8));
  const std::string base = temp("base.bin");
  const std::string common = "perplexity -m " + path_ + " -f " + text + " --ctx 32 --stride 16 -t 2 --json";

  CliRun save = baichuan_cli(common + " --kl-base " + base);
  ASSERT_EQ(save.exit_code, 0) << save.err;
  json s = json::parse(save.out);
  EXPECT_EQ(s["ctx"], 32);
  EXPECT_EQ(s["stride"], 16);
  EXPECT_EQ(s["kl_base"]["mode"], "saved");
  EXPECT_NE(save.err.find("perplexity: 100%"), std::string::npos) << save.err;  // not a terminal: lines
  const double ppl = s["perplexity"];
  EXPECT_GT(ppl, 1.0);
  EXPECT_NEAR(std::log(ppl), s["nll_mean"].get<double>(), 1e-9);

  // The same numbers as the library with the CLI's default F16 cache.
  auto ids = model_->tokenizer().encode(read_text_file(text));
  model_->set_kv_type(DType::F16);
  auto r = eval::perplexity(*model_, ids, {32, 16, 512}, pool_);
  EXPECT_EQ(s["tokens"], r.tokens);
  EXPECT_EQ(s["windows"], r.windows);
  EXPECT_NEAR(ppl, r.perplexity, 1e-9 * ppl);

  // The base file: header + ids + tokens x vocab f16 + footer, and no temporary left behind.
  const auto bytes = fs::file_size(base);
  EXPECT_GE(bytes, static_cast<uintmax_t>(r.tokens * 125696 * 2));
  EXPECT_LT(bytes, static_cast<uintmax_t>(r.tokens * 125696 * 2 + 64 + ids.size() * 4 + 128));
  for (const auto& e : fs::directory_iterator(fs::path(base).parent_path()))
    EXPECT_EQ(e.path().string().find(base + ".tmp"), std::string::npos) << e.path();

  CliRun same = baichuan_cli(common + " --kl-base " + base);
  ASSERT_EQ(same.exit_code, 0) << same.err;
  json c = json::parse(same.out)["kl_base"];
  EXPECT_EQ(c["mode"], "compared");
  EXPECT_LT(c["kl_mean"].get<double>(), 1e-9);
  EXPECT_DOUBLE_EQ(c["top1_agreement"].get<double>(), 1.0);
  EXPECT_NEAR(c["base_perplexity"].get<double>(), ppl, 1e-9 * ppl);

  // A 4-bit copy of the model: a small but real divergence. (The tiny model's heads of 8 cannot
  // hold a Q8_0 KV cache.)
  const std::string q4 = temp("q4_0.gguf");
  ASSERT_EQ(baichuan_cli("quantize " + path_ + " " + q4 + " q4_0 -t 2").exit_code, 0);
  CliRun quant = baichuan_cli("perplexity -m " + q4 + " -f " + text + " --ctx 32 --stride 16 -t 2 --kl-base " + base);
  fs::remove(q4);
  ASSERT_EQ(quant.exit_code, 0) << quant.err;
  EXPECT_NE(quant.out.find("Hugging Face strided definition"), std::string::npos) << quant.out;
  double kl_mean = 0, kl_max = 0, agreement = 0, base_ppl = 0;
  const auto at = quant.out.find("kl-divergence vs " + base + ": mean ");
  ASSERT_NE(at, std::string::npos) << quant.out;
  ASSERT_EQ(std::sscanf(quant.out.c_str() + at + base.size() + 17,
                        ": mean %lf, max %lf; top-1 agreement %lf%%; base perplexity %lf", &kl_mean, &kl_max,
                        &agreement, &base_ppl),
            4)
      << quant.out;
  EXPECT_GT(kl_mean, 0.0);
  EXPECT_LT(kl_mean, 0.05);
  EXPECT_GE(kl_max, kl_mean);
  EXPECT_GT(agreement, 30.0);  // the tiny model is random: its distributions are flat
  EXPECT_NEAR(base_ppl, ppl, 1e-4 * ppl);

  // A base from another stride or another text is refused, naming the file and the field.
  CliRun stride = baichuan_cli("perplexity -m " + path_ + " -f " + text + " --ctx 32 --stride 8 --kl-base " + base);
  EXPECT_EQ(stride.exit_code, 1);
  EXPECT_NE(stride.err.find("error: " + base + ": stride"), std::string::npos) << stride.err;
  const std::string other = write_file("other.txt", poems(9));
  CliRun text2 = baichuan_cli("perplexity -m " + path_ + " -f " + other + " --ctx 32 --stride 16 --kl-base " + base);
  EXPECT_EQ(text2.exit_code, 1);
  EXPECT_NE(text2.err.find(base + ": token ids"), std::string::npos) << text2.err;
  const std::string junk = write_file("junk.bin", "not a base");
  CliRun bad = baichuan_cli("perplexity -m " + path_ + " -f " + text + " --kl-base " + junk);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("not a --kl-base file"), std::string::npos) << bad.err;
  for (const auto& f : {base, text, other, junk}) fs::remove(f);
}

TEST_F(PerplexityModel, CliRefusesBadInput) {
  const std::string text = write_file("short.txt", poems(4));
  auto expect_error = [&](const std::string& args, const std::string& message) {
    CliRun r = baichuan_cli("perplexity -m " + path_ + " " + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.err.find("error: "), std::string::npos) << args << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(r.out, "") << args;
  };
  expect_error("-f " + temp("missing.txt"), "missing.txt");
  expect_error("-f " + write_file("empty.txt", ""), "empty");
  expect_error("-f " + write_file("one.txt", "a"), "at least 2");
  expect_error("-f " + text + " --ctx 1", "--ctx must be at least 2");
  expect_error("-f " + text + " --ctx 8 --stride 9", "--stride must be between 1 and --ctx (8)");
  expect_error("-f " + text + " --stride 0", "--stride must be between");
  for (const char* f : {"short.txt", "empty.txt", "one.txt"}) fs::remove(temp(f));
}

}  // namespace
}  // namespace baichuan
