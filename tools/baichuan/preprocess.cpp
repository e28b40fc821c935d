// baichuan preprocess: BELLE / Alpaca conversations to the labelled rows the fine-tuning reads (the
// official fine-tune script's labels), or plain text to pre-training rows, as a token file, a JSON list
// or a MindRecord file set.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "progress.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset_preprocess.h"

namespace baichuan::cli {

namespace {

struct PreprocessCommand {
  train::PreprocessOptions options;
  std::string format = "tokens", layout = "auto", tokenizer, model;
  int threads = 0;
  bool json = false;

  std::shared_ptr<const Tokenizer> load_tokenizer() const {
    if (!tokenizer.empty()) return std::make_shared<const Tokenizer>(Tokenizer::from_file(tokenizer));
    if (model.empty()) fail("preprocess needs a tokenizer: --tokenizer tokenizer.model or -m MODEL");
    return open_checkpoint(model).tokenizer;  // the weights are mapped, not read
  }

  int run() {
    options.format = train::parse_dataset_format(format);
    options.layout = train::parse_input_layout(layout);
    const auto tok = load_tokenizer();
    ThreadPool pool(ThreadPool::threads_for_request(threads));
    ProgressBar bar("preprocess");
    const auto start = std::chrono::steady_clock::now();
    const auto s = train::preprocess_dataset(*tok, options, &pool, [&](const train::PreprocessProgress& p) {
      if (p.bytes_total == 0) return;  // a pipe: no size to measure against
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      bar.update(static_cast<long long>(p.bytes_read), static_cast<long long>(p.bytes_total), seconds,
                 strprintf("bytes of input, %lld records", static_cast<long long>(p.records)));
    });
    const double label_share = s.tokens ? static_cast<double>(s.label_tokens) / static_cast<double>(s.tokens) : 0;
    const double rate = static_cast<double>(s.records + s.bad_records) / std::max(s.seconds, 1e-9);
    if (json) {
      nlohmann::json bad = nlohmann::json::array();
      for (const auto& b : s.bad) bad.push_back({{"record", b.record}, {"error", b.message}});
      std::cout << nlohmann::json{{"input", options.input},
                                  {"layout", train::layout_name(s.layout)},
                                  {"json_lines", s.json_lines},
                                  {"format", format},
                                  {"row_length", s.row_length},
                                  {"files", s.files},
                                  {"records", s.records},
                                  {"rows", s.rows},
                                  {"packed", options.pack},
                                  {"bad_records", s.bad_records},
                                  {"bad", bad},
                                  {"truncated", s.truncated},
                                  {"tokens", s.tokens},
                                  {"dropped_tokens", s.dropped_tokens},
                                  {"label_tokens", s.label_tokens},
                                  {"label_share", label_share},
                                  {"seconds", s.seconds},
                                  {"records_per_second", rate}}
                       .dump()
                << "\n";
      return 0;
    }
    std::cout << "input      " << options.input << " (" << train::layout_name(s.layout) << ", "
              << (s.json_lines ? "JSON Lines" : "JSON array") << ")\n";
    std::cout << "records    " << s.records << " written, " << s.bad_records << " bad"
              << (s.bad_records ? " (skipped)" : "") << "\n";
    if (options.pack) std::cout << "packed     into " << s.rows << " rows\n";
    std::cout << "truncated  " << s.truncated << " longer than " << s.row_length << " tokens (" << s.dropped_tokens
              << " tokens cut)\n";
    std::cout << "tokens     " << s.tokens << ", of which label tokens " << s.label_tokens
              << strprintf(" (%.1f%%)\n", 100 * label_share);
    std::cout << "output     " << format << ", rows of " << s.row_length << ":";
    for (const auto& f : s.files) std::cout << " " << f;
    std::cout << "\n" << strprintf("time       %.2f s (%.0f records/s)\n", s.seconds, rate);
    if (s.bad_records) {
      std::cout << "bad records";
      if (s.bad_records > static_cast<int64_t>(s.bad.size())) std::cout << " (first " << s.bad.size() << " of " << s.bad_records << ")";
      std::cout << ":\n";
      for (const auto& b : s.bad) std::cout << "  " << b.message << "\n";
    }
    return 0;
  }
};

}  // namespace

Run add_preprocess(CLI::App& app) {
  auto cmd = std::make_shared<PreprocessCommand>();
  auto& o = cmd->options;
  app.description(
      "Tokenize and label fine-tuning conversations as the official Baichuan 2 fine-tune script does: a human turn "
      "adds 195 + its ids (labels: 2 then -100), any other turn 196 + its ids (labels: -100 then the ids), then 2; "
      "rows are cut to --seq-length from the right and padded (input 0, labels -100). Input: BELLE "
      "{id, conversations: [{from, value}]} or Alpaca {instruction, input, output[, history]}, as a JSON array or "
      "JSON Lines. Plain text {\"text\"} (--layout text) gives pre-training rows: the text's ids then 2, labels = input ids; "
      "--pack runs them on across rows. The input is streamed; the output files appear only when everything is written.");
  app.add_option("--input", o.input, "BELLE, Alpaca or text data, JSON array or JSON Lines")->required();
  app.add_option("-o,--output", o.output,
                 "Output file (mindrecord with --shards K: the prefix of OUT0..OUTK-1, each with a .db index)")
      ->required();
  app.add_option("--seq-length", o.seq_length, "Tokens per row (MindRecord rows hold seq_length + 1, as MindFormers')")
      ->required();
  app.add_option("--tokenizer", cmd->tokenizer, "tokenizer.model");
  app.add_option("-m,--model", cmd->model, "Take the tokenizer of this checkpoint (HF folder, .ckpt folder, GGUF)");
  app.add_option("--format", cmd->format,
                 "tokens (default: our memory-mappable format), json (a list of {id, input_ids, labels}) or "
                 "mindrecord (MindFormers' belle_preprocess.py layout)")
      ->check(CLI::IsMember({"tokens", "json", "mindrecord"}));
  app.add_option("--layout", cmd->layout, "Input layout: auto (from the first record), belle, alpaca or text")
      ->check(CLI::IsMember({"auto", "belle", "alpaca", "text"}));
  app.add_flag("--pack", o.pack,
               "Text layout: concatenate the records (each ending in EOS) and cut them into full rows, so only the "
               "last row is padded (pre-training packing)");
  app.add_option("--shards", o.mindrecord.shards, "MindRecord shard count K (files OUT0..OUTK-1)")
      ->check(CLI::Range(1, 1000));
  app.add_flag("--skip-bad", o.skip_bad, "Skip records that are not valid conversations, and list them in the summary");
  app.add_option("-t,--threads", cmd->threads, "Tokenizer threads (default: all hardware threads)")
      ->check(thread_count_check());
  app.add_flag("--json", cmd->json, "Print the summary as one JSON object");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
