// One benchmark run end to end: read the data in its official layout, build each item's few-shot
// prompt, score it (multiple choice: the answer letters' logits; BBH: greedy chain-of-thought
// generation and answer extraction) and collect an EvalReport.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "eval/report.h"
#include "model/model.h"

namespace baichuan::eval {

struct EvalOptions {
  std::string task;  // ceval | mmlu | cmmlu | gaokao | agieval | bbh
  std::string data;  // the benchmark's folder
  int64_t shots = -1;                 // -1: the benchmark's (5; BBH's prompts are 3-shot)
  int64_t limit = 0;                  // scored items per subject; 0 = all
  std::vector<std::string> subjects;  // empty = all
  std::string split;                  // MMLU: "test" or "val"; empty = test if present, else val
  int64_t context = 4096;             // the longest prompt (plus BBH's generation)
  int64_t max_new_tokens = -1;        // BBH: tokens generated per item at most; -1: kBbhMaxNewTokens
};

// Progress after each item.
struct ItemDone {
  int64_t done, total;
  double seconds;
  int64_t correct;  // so far
};

// Throws Error for bad options or data (naming the file or value) before any item is scored.
EvalReport run_eval(const Model& model, ThreadPool& pool, const EvalOptions& options,
                    const std::function<void(const ItemDone&)>& on_item = {});

}  // namespace baichuan::eval
