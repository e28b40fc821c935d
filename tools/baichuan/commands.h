// One function per subcommand: each adds itself to the app and returns the callback that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace baichuan::cli {

using Run = std::function<int()>;

Run add_generate(CLI::App& app);
Run add_chat(CLI::App& app);
Run add_tokenize(CLI::App& app);
Run add_logits(CLI::App& app);
Run add_convert(CLI::App& app);
Run add_init(CLI::App& app);
Run add_quantize(CLI::App& app);
Run add_bench(CLI::App& app);
Run add_serve(CLI::App& app);
Run add_perplexity(CLI::App& app);
Run add_eval(CLI::App& app);
Run add_preprocess(CLI::App& app);
Run add_finetune(CLI::App& app);
Run add_merge_lora(CLI::App& app);
Run add_inspect(CLI::App& app);

}  // namespace baichuan::cli
