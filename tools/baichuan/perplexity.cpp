// baichuan perplexity: sliding-window perplexity of a text file (Hugging Face's strided definition,
// see eval/perplexity.h), with a progress bar, and --kl-base to save or compare full distributions.
#include "eval/perplexity.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/kl_base.h"
#include "progress.h"

namespace baichuan::cli {

namespace {

struct PerplexityCommand {
  ModelOptions model;
  std::string file, kl_base;
  eval::PerplexityOptions options;
  bool json = false;

  int run() {
    eval::validate(options);  // before loading: a bad flag should not cost a model load
    if (!kl_base.empty() && !file_exists(kl_base)) model.check_output(kl_base);
    const std::string text = read_text_file(file);
    if (text.empty()) fail(file, ": the text file is empty");
    auto m = model.load();
    const std::vector<int32_t> ids = m->tokenizer().encode(text);  // no BOS: Baichuan's tokenizer adds none
    if (ids.size() < 2)
      fail(file, ": the text has ", ids.size(), " token", ids.size() == 1 ? "" : "s", "; perplexity needs at least 2");
    const auto windows = eval::perplexity_windows(static_cast<int64_t>(ids.size()), options);
    eval::KlBaseHeader header{m->config().vocab_size, options.ctx, options.stride, 0, ids};
    for (const auto& w : windows) header.scored += w.end - w.first_scored;

    std::optional<eval::KlBaseWriter> writer;
    std::optional<eval::KlBaseComparer> comparer;
    if (!kl_base.empty()) {
      if (file_exists(kl_base)) {
        comparer.emplace(kl_base, header);
        std::cerr << "comparing with the distributions in " << kl_base << "\n";
      } else {
        writer.emplace(kl_base, header);
        std::cerr << "saving " << header.scored << " distributions of " << header.vocab << " log-probabilities to "
                  << kl_base << strprintf(" (%.1f MB)\n", static_cast<double>(header.scored * header.vocab * 2) / 1e6);
      }
    }
    std::cerr << "perplexity of " << file << ": " << ids.size() << " tokens, " << windows.size() << " windows of ctx "
              << options.ctx << ", stride " << options.stride << ", " << header.scored << " tokens scored\n";

    ThreadPool pool(model.thread_count());
    ProgressBar progress("perplexity");
    auto on_token = [&](const eval::ScoredToken& t) {
      if (writer) writer->add(t);
      if (comparer) comparer->add(t);
    };
    const auto r = eval::perplexity(
        *m, ids, options, pool, [&](const eval::WindowDone& d) {
          const double ppl = d.tokens_scored ? std::exp(d.nll_sum / static_cast<double>(d.tokens_scored)) : 0;
          progress.update(d.tokens_scored, d.tokens_total, d.seconds,
                          strprintf("window %lld/%lld, ppl %.4f", static_cast<long long>(d.window),
                                    static_cast<long long>(d.windows), ppl));
        }, on_token);
    if (writer) {
      writer->commit(r.nll_sum);
      std::cerr << "saved " << kl_base << " (" << writer->bytes() << " bytes)\n";
    }

    const double tps = static_cast<double>(r.tokens) / std::max(r.seconds, 1e-9);
    if (json) {
      nlohmann::json out = {
          {"perplexity", r.perplexity}, {"nll_mean", r.nll_mean},   {"tokens", r.tokens},
          {"windows", r.windows},       {"ctx", options.ctx},       {"stride", options.stride},
          {"seconds", r.seconds},       {"tokens_per_second", tps}, {"definition", "huggingface-strided"}};
      if (writer) out["kl_base"] = {{"path", kl_base}, {"mode", "saved"}};
      if (comparer) {
        const auto& c = comparer->result();
        out["kl_base"] = {{"path", kl_base},
                          {"mode", "compared"},
                          {"kl_mean", c.kl_mean()},
                          {"kl_max", c.kl_max},
                          {"top1_agreement", c.top1_agreement()},
                          {"base_perplexity", c.base_perplexity()}};
      }
      std::cout << out.dump() << "\n";
    } else {
      std::cout << "perplexity: " << strprintf("%.4f", r.perplexity) << " over " << r.tokens << " tokens (" << r.windows
                << " windows of ctx " << options.ctx << ", stride " << options.stride
                << "; Hugging Face strided definition)\n";
      if (comparer) {
        const auto& c = comparer->result();
        std::cout << "kl-divergence vs " << kl_base << ": mean " << strprintf("%.6f", c.kl_mean()) << ", max "
                  << strprintf("%.6f", c.kl_max) << "; top-1 agreement " << strprintf("%.2f%%", 100 * c.top1_agreement())
                  << "; base perplexity " << strprintf("%.4f", c.base_perplexity()) << "\n";
      }
    }
    std::cerr << r.tokens << " tokens scored in " << strprintf("%.2f s (%.1f tokens/s)", r.seconds, tps) << "\n";
    return 0;
  }
};

}  // namespace

Run add_perplexity(CLI::App& app) {
  auto cmd = std::make_shared<PerplexityCommand>();
  app.description(
      "Sliding-window perplexity of a text file, as Hugging Face's \"Perplexity of fixed-length models\" defines "
      "it: windows of --ctx tokens start every --stride tokens; each scores only the tokens after the previous "
      "window's end (the first window all but its first token); PPL = exp(mean NLL). No BOS is added.");
  cmd->model.add(app);
  cmd->model.add_lora(app);
  app.add_option("-f,--file", cmd->file, "Text file to score")->required();
  app.add_option("-c,--ctx", cmd->options.ctx, "Window length in tokens")->capture_default_str();
  app.add_option("--stride", cmd->options.stride, "Tokens between window starts (1..ctx)")->capture_default_str();
  app.add_option("--kl-base", cmd->kl_base,
                 "If the file does not exist, save every scored token's log-probabilities there (f16: about tokens x "
                 "vocab x 2 bytes); if it exists, report KL(base || this), top-1 agreement and the base's perplexity");
  app.add_flag(
      "--json", cmd->json,
      "Print one JSON object {perplexity, nll_mean, tokens, windows, ctx, stride, seconds, tokens_per_second}");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
