// baichuan eval: few-shot C-Eval, MMLU, CMMLU, GAOKAO, AGIEval (multiple choice) and BBH
// (chain-of-thought generation) as Baichuan 2 reports them; --compare and --plot for saved runs.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/evaluation.h"
#include "eval/svg_plot.h"
#include "generate/generation_defaults.h"
#include "progress.h"

namespace baichuan::cli {

namespace {

void write_file(const std::string& path, const std::string& text) {
  AtomicFile file(path);
  file.write(text);
  file.commit();
}

struct EvalCommand {
  ModelOptions model;
  eval::EvalOptions options;
  int64_t ctx = 0;
  std::string json_out, plot_out;
  std::vector<std::string> compare;

  int run_compare() {
    // Options of a run would be ignored here: say so rather than print a comparison the user did not ask for.
    if (!model.path.empty() || !model.loras.empty() || !options.task.empty() || !options.data.empty() ||
        !json_out.empty())
      fail("--compare prints saved runs side by side: -m, --lora, --task, --data and --json do not apply to it");
    std::vector<eval::EvalReport> runs;
    std::vector<std::string> labels;
    for (const auto& path : compare) {
      runs.push_back(eval::read_report(path));
      labels.push_back(std::filesystem::path(path).stem().string());
    }
    std::cout << eval::format_comparison(runs, labels);
    if (!plot_out.empty()) {
      write_file(plot_out, eval::accuracy_svg(runs, labels));
      std::cerr << "wrote " << plot_out << "\n";
    }
    return 0;
  }

  int run() {
    if (!compare.empty()) return run_compare();
    if (model.path.empty() || options.task.empty() || options.data.empty())
      fail("eval needs -m MODEL, --task and --data (or --compare A.json B.json ...)");
    options.task = eval::parse_task(options.task);  // before loading: a bad flag should not cost a model load
    for (const auto& out : {json_out, plot_out})
      if (!out.empty()) model.check_output(out);
    auto m = model.load();
    options.context = ctx > 0 ? ctx : default_context(m->config());
    ThreadPool pool(model.thread_count());
    ProgressBar progress("eval " + options.task);
    auto report = eval::run_eval(*m, pool, options, [&](const eval::ItemDone& d) {
      progress.update(d.done, d.total, d.seconds,
                      strprintf("%.1f%% right, %.2f items/s", 100.0 * static_cast<double>(d.correct) / static_cast<double>(d.done),
                                static_cast<double>(d.done) / std::max(d.seconds, 1e-9)));
    });
    report.model = model.path;

    std::cout << options.task << ", " << report.shots << "-shot, " << report.items.size() << " items, model "
              << model.path << "\n";
    if (!report.choice_ids.empty())
      std::cout << "answer tokens: A=" << report.choice_ids[0] << " B=" << report.choice_ids[1]
                << " C=" << report.choice_ids[2] << " D=" << report.choice_ids[3]
                << " (the highest logit at the last prompt position is the answer)\n";
    for (const auto& note : report.notes) std::cout << "note: " << note << "\n";
    std::cout << "\n" << eval::format_table(report);
    std::cerr << report.items.size() << " items in "
              << strprintf("%.1f s (%.2f items/s); %lld prompt tokens, %lld of them (%.0f%%) reused from the shared shots' "
                           "KV cache\n",
                           report.seconds, static_cast<double>(report.items.size()) / std::max(report.seconds, 1e-9),
                           static_cast<long long>(report.prompt_tokens), static_cast<long long>(report.reused_tokens),
                           100.0 * static_cast<double>(report.reused_tokens) /
                               static_cast<double>(std::max<int64_t>(report.prompt_tokens, 1)));
    if (!json_out.empty()) {
      write_file(json_out, eval::report_json_text(report));
      std::cerr << "wrote " << json_out << " (every item's prompt and prediction)\n";
    }
    if (!plot_out.empty()) {
      write_file(plot_out, eval::accuracy_svg({report}, {std::filesystem::path(model.path).filename().string()}));
      std::cerr << "wrote " << plot_out << "\n";
    }
    return 0;
  }
};

}  // namespace

Run add_eval(CLI::App& app) {
  auto cmd = std::make_shared<EvalCommand>();
  app.description(
      "Few-shot benchmarks as Baichuan 2 reports them. Multiple choice (ceval, mmlu, cmmlu, gaokao, agieval): one "
      "forward pass per item, the answer is the letter A-D whose token has the highest logit at the last position; "
      "the KV cache of the shots is shared by a subject's items. bbh: greedy 3-shot chain-of-thought generation.");
  cmd->model.add(app, false);
  cmd->model.add_lora(app);
  app.add_option("--task", cmd->options.task, "ceval | mmlu | cmmlu | gaokao | agieval | bbh");
  app.add_option("--data", cmd->options.data, "The benchmark's folder, in its official layout");
  app.add_option("--shots", cmd->options.shots, "Few-shot examples per prompt (default 5; bbh: 3, fixed)");
  app.add_option("--limit", cmd->options.limit, "Score at most N items per subject (0 = all)");
  app.add_option("--subjects", cmd->options.subjects, "Only these subjects/tasks (file stems), comma-separated")
      ->delimiter(',');
  app.add_option("--split", cmd->options.split, "MMLU: test or val (default: test if present, else val)");
  app.add_option("-c,--ctx", cmd->ctx, "Longest prompt in tokens (default: max(model_max_length, 4096)); longer "
                                        "prompts lose shots from the end, as MMLU's script does at 2048")
      ->check(at_least(1));
  app.add_option("--max-new-tokens", cmd->options.max_new_tokens,
                 "bbh: generate at most N tokens per item (default 512; fewer for a quick run, at the cost of "
                 "answers cut off before \"So the answer is\")");
  app.add_option("--json", cmd->json_out,
                 "Write the run to this JSON file: every item's exact prompt, prediction and logits (bbh: output)");
  app.add_option("--compare", cmd->compare, "Print saved runs (--json files) side by side; no model needed")
      ->expected(1, -1);
  app.add_option("--plot", cmd->plot_out,
                 "Write an SVG chart: accuracy per subject, or with --compare the averages across the runs");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
