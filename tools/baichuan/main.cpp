// baichuan: run, convert and inspect Baichuan 2 models on the CPU.
#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>

#include "commands.h"
#include "core/error.h"
#include "core/version.h"
#include "kernels/cpu.h"
#include "kernels/matmul_precision.h"
#include "train/data_parallel.h"

int main(int argc, char** argv) {
  CLI::App app{"baichuan.cpp: Baichuan 2 on the CPU"};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "Print the version and the CPU kernels in use");
  std::map<CLI::App*, baichuan::cli::Run> runs;
  auto sub = [&](const char* name, const char* help, baichuan::cli::Run (*add)(CLI::App&)) {
    CLI::App* cmd = app.add_subcommand(name, help);
    runs[cmd] = add(*cmd);
  };
  sub("generate", "Continue a prompt or answer a conversation", baichuan::cli::add_generate);
  sub("chat", "Interactive multi-turn chat with streaming output", baichuan::cli::add_chat);
  sub("tokenize", "Show the token ids of a text or conversation", baichuan::cli::add_tokenize);
  sub("logits", "Write the last-position logits as float32", baichuan::cli::add_logits);
  sub("convert", "Convert a checkpoint to GGUF", baichuan::cli::add_convert);
  sub("init", "Write a GGUF with random weights of any Baichuan 2 shape", baichuan::cli::add_init);
  sub("quantize", "Convert a checkpoint to a GGUF of another type (q4_0, q4_k_m, ...)", baichuan::cli::add_quantize);
  sub("bench", "Measure prompt and generation speed (llama-bench style)", baichuan::cli::add_bench);
  sub("serve", "OpenAI-compatible HTTP server with a chat page", baichuan::cli::add_serve);
  sub("perplexity", "Sliding-window perplexity of a text file; --kl-base for KL vs a base model", baichuan::cli::add_perplexity);
  sub("eval", "Few-shot C-Eval, MMLU, CMMLU, GAOKAO, AGIEval, BBH; --compare / --plot saved runs", baichuan::cli::add_eval);
  sub("preprocess", "Tokenize and label BELLE/Alpaca conversations for fine-tuning (tokens, json, mindrecord)",
      baichuan::cli::add_preprocess);
  sub("finetune", "Full fine-tuning on the CPU from a dataset (--data), with checkpoints and --resume; or --one-step",
      baichuan::cli::add_finetune);
  sub("merge-lora", "Merge LoRA adapters (PEFT or GGUF) into a checkpoint, written as convert writes",
      baichuan::cli::add_merge_lora);
  sub("inspect", "What a checkpoint is: format, architecture, tensor types (NF4 too), head, tokenizer",
      baichuan::cli::add_inspect);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // One rule for every argument error, as for every other error: one `error:` line, exit 1. A
    // value is cut short so a pasted 300-digit number does not flood the terminal.
    std::string message = e.what();
    if (message.size() > 300) message = message.substr(0, 300) + "...";
    std::cerr << "error: " << message << " (see --help)\n";
    return 1;
  }
  try {
    baichuan::kernels::check_backend_request();  // BAICHUAN_CPU names a path this CPU can run
    baichuan::kernels::check_matmul_precision_request();  // BAICHUAN_MATMUL_PRECISION is highest or medium
  } catch (const baichuan::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  if (version) {
    std::cout << "baichuan.cpp " << baichuan::version() << "; " << baichuan::kernels::describe_cpu() << "\n"
              << (baichuan::train::built_with_mpi() ? "finetune: data parallel under mpirun -np K (OpenMPI)\n"
                                                    : "finetune: one process (built without MPI)\n");
    return 0;
  }
  for (auto& [cmd, run] : runs) {
    if (!cmd->parsed()) continue;
    try {
      const int code = run();
      // Results go to stdout: a write that failed (a full disk, a closed pipe) must not exit 0.
      std::cout.flush();
      if (!std::cout) {
        std::cerr << "error: writing the output to stdout failed: " << std::strerror(errno) << "\n";
        return 1;
      }
      return code;
    } catch (const baichuan::Error& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    } catch (const std::bad_alloc&) {
      std::cerr << "error: out of memory\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cout << app.help();
  return 0;
}
