// Data-parallel fine-tuning over OpenMPI (train/data_parallel.h): the ranks' shares of the data order;
// `mpirun -np 2 baichuan finetune` against one process with the same global batch on a tiny random
// model of each family (the same loss curve, held-out losses and weights within 1e-6 relative),
// resumed halfway with 2 ranks and, at the same global batch, with 1; resuming with another global
// batch refused; an error on rank 0 and a rank killed with SIGKILL end the job with a clear error on
// every rank and leave the last checkpoint valid. The mpirun tests skip when the build has no MPI or mpirun is not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "core/splitmix64.h"
#include "model/checkpoint.h"
#include "model/lora_adapter.h"
#include "preprocess_fixtures.h"
#include "train/checkpoint_dir.h"
#include "train/data_order.h"
#include "train/data_parallel.h"
#include "train/hf_export.h"
#include "train/train_model.h"

namespace baichuan {
namespace data_parallel_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::CliRun;
using testing::ScratchDir;

// OpenMPI 4.1 (Debian 12) on one machine as CI runs it: as root in a container, more ranks than
// cores allowed, the shared-memory transport only (no network), and no single-copy mechanism (CMA
// needs ptrace rights a container may not grant).
constexpr const char* kMpirunFlags =
    "--allow-run-as-root --oversubscribe --mca btl self,vader --mca pml ob1 --mca btl_vader_single_copy_mechanism none";

std::string mpirun_path() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && access((fs::path(dir) / "mpirun").c_str(), X_OK) == 0) return (fs::path(dir) / "mpirun").string();
  return "";
}

// Runs a shell command line, capturing its exit code, stdout and stderr.
CliRun run_command_line(const std::string& command, const ScratchDir& dir) {
  static int counter = 0;
  const std::string out = dir / ("out" + std::to_string(counter) + ".txt"), err = dir / ("err" + std::to_string(counter) + ".txt");
  ++counter;
  const int status = std::system((command + " >" + out + " 2>" + err + " </dev/null").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text_file(out), read_text_file(err)};
}

#ifdef BAICHUAN_SANITIZED_BUILD
// OpenMPI's own allocations (in components it unloads at MPI_Finalize, so no suppression can name
// them) would make LeakSanitizer fail every rank: the ranks run under ASan/UBSan without leak checks.
constexpr const char* kRankEnvironment = "env ASAN_OPTIONS=detect_leaks=0 ";
#else
constexpr const char* kRankEnvironment = "";
#endif

std::string mpirun_finetune(int ranks, const std::string& args) {
  return kRankEnvironment + mpirun_path() + " " + kMpirunFlags + " -np " + std::to_string(ranks) + " " +
         testing::cli_program() + " finetune " + args;
}

std::string finetune(const std::string& args) { return testing::cli_program() + " finetune " + args; }

constexpr int64_t kVocab = 512, kRowLength = 16, kRecords = 24;

// A random Baichuan 2 of a few ten thousand parameters as a Hugging Face folder (the real tokenizer
// file beside it, unused: the dataset holds ids).
std::string write_tiny_model(const ScratchDir& dir, const std::string& name, PositionEncoding position) {
  nlohmann::json cfg = {{"architectures", {"BaichuanForCausalLM"}},
                        {"model_type", "baichuan"},
                        {"vocab_size", kVocab},
                        {"hidden_size", 32},
                        {"intermediate_size", 64},
                        {"num_attention_heads", 4},
                        {"num_hidden_layers", 2},
                        {"model_max_length", 64},
                        {"z_loss_weight", 1e-3},
                        {"pad_token_id", 0}};
  const ModelConfig config = parse_model_config(cfg.dump(), name, position);
  train::TrainModel<float> model(train::TrainShape::from(config));
  train::randomize(model, 11, 0.05);
  fs::create_directories(dir / name);
  train::write_hf_folder(dir / name, model, {config, "", read_text_file(testing::tokenizer_path())});
  return dir / name;
}

// kRecords rows of kRowLength ids: a 4-token prompt (labels -100), an answer, 0 to 3 pad tokens.
std::string write_dataset(const ScratchDir& dir) {
  nlohmann::json records = nlohmann::json::array();
  uint64_t state = 5;
  for (int64_t r = 0; r < kRecords; ++r) {
    std::vector<int32_t> ids(kRowLength, 0), labels(kRowLength, -100);
    const int64_t length = kRowLength - static_cast<int64_t>(splitmix64(state) % 4);
    for (int64_t t = 0; t < length; ++t) {
      ids[t] = t == 0 ? 1 : static_cast<int32_t>(3 + splitmix64(state) % (kVocab - 3));
      if (t >= 4) labels[t] = ids[t];
    }
    records.push_back({{"id", std::to_string(r)}, {"input_ids", ids}, {"labels", labels}});
  }
  testing::write_text(dir / "data.json", records.dump());
  return dir / "data.json";
}

std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  std::istringstream in(read_text_file(path));
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream row(line);
    while (std::getline(row, cell, ',')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

bool close_relative(double a, double b, double tolerance) {
  return std::fabs(a - b) <= tolerance * std::max(std::fabs(a), std::fabs(b));
}

// The CSV logs agree in every column but the seconds, numbers within `tolerance` relative.
void expect_same_curve(const std::string& one_path, const std::string& two_path, double tolerance) {
  const auto one = csv_rows(one_path), two = csv_rows(two_path);
  ASSERT_EQ(one.size(), two.size());
  ASSERT_EQ(one[0], two[0]);  // the header
  for (size_t r = 1; r < one.size(); ++r) {
    ASSERT_EQ(one[r].size(), two[r].size()) << "row " << r;
    for (size_t c = 0; c < one[r].size(); ++c) {
      if (one[0][c] == "seconds") continue;
      if (one[r][c].empty() || two[r][c].empty()) {
        EXPECT_EQ(one[r][c], two[r][c]) << one[0][c] << " at row " << r;
        continue;
      }
      EXPECT_TRUE(close_relative(std::stod(one[r][c]), std::stod(two[r][c]), tolerance))
          << one[0][c] << " at row " << r << ": " << one[r][c] << " vs " << two[r][c];
    }
  }
}

// The largest relative difference ||a - b|| / ||a|| of a parameter tensor between two exported models.
// (Per tensor, not per element: an element the updates bring near zero has no meaningful relative
// error, and AdamW turns rounding into updates of up to lr on elements whose gradients are tiny.)
double max_relative_weight_difference(const std::string& a_dir, const std::string& b_dir) {
  auto a = train::load_train_model<float>(open_checkpoint(a_dir));
  auto b = train::load_train_model<float>(open_checkpoint(b_dir));
  EXPECT_EQ(a.params().size(), b.params().size());
  if (a.params().size() != b.params().size()) return 1;
  double worst = 0;
  for (const train::ParamInfo& p : a.layout()) {
    double diff = 0, norm = 0;
    const auto x = a.param(p), y = b.param(p);
    for (size_t i = 0; i < x.size(); ++i) {
      diff += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      norm += static_cast<double>(x[i]) * x[i];
    }
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  return worst;
}

// The same for two LoRA adapters (PEFT folders) of one base: per A and B matrix.
double max_relative_adapter_difference(const std::string& base, const std::string& a_dir, const std::string& b_dir) {
  const ModelConfig config = open_checkpoint(base).config;
  const LoraAdapter a = read_lora_adapter(a_dir, config), b = read_lora_adapter(b_dir, config);
  EXPECT_EQ(a.modules.size(), b.modules.size());
  if (a.modules.size() != b.modules.size() || a.modules.empty()) return 1;
  double worst = 0;
  auto compare = [&worst](const std::vector<float>& x, const std::vector<float>& y) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      diff += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      norm += static_cast<double>(x[i]) * x[i];
    }
    worst = std::max(worst, x.size() == y.size() && norm > 0 ? std::sqrt(diff / norm) : 1.0);
  };
  for (size_t m = 0; m < a.modules.size(); ++m) {
    compare(a.modules[m].a, b.modules[m].a);
    compare(a.modules[m].b, b.modules[m].b);
  }
  return worst;
}

TEST(DataParallelShare, EveryKthRecordStartingAtTheRank) {
  const std::vector<int64_t> rows{10, 11, 12, 13, 14, 15, 16};
  EXPECT_EQ(train::rank_share(rows, 0, 1), rows);
  EXPECT_EQ(train::rank_share(rows, 0, 2), (std::vector<int64_t>{10, 12, 14, 16}));
  EXPECT_EQ(train::rank_share(rows, 1, 2), (std::vector<int64_t>{11, 13, 15}));
  EXPECT_EQ(train::rank_share(rows, 2, 3), (std::vector<int64_t>{12, 15}));
  EXPECT_TRUE(train::rank_share(rows, 7, 8).empty());
  EXPECT_THROW(train::rank_share(rows, 2, 2), Error);
}

TEST(DataParallelCommunicator, OneProcessLeavesValuesAsTheyAre) {
  train::Communicator one;
  EXPECT_EQ(one.rank(), 0);
  EXPECT_EQ(one.size(), 1);
  EXPECT_TRUE(one.is_root());
  std::vector<float> values{1.5f, -2.0f};
  one.sum(std::span<float>(values));
  EXPECT_EQ(values, (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(one.sum(0.25), 0.25);
  const train::LossNorm counts = one.sum(train::LossNorm{7, 9});
  EXPECT_EQ(counts.ce_tokens, 7);
  EXPECT_EQ(counts.z_rows, 9);
  EXPECT_TRUE(one.same_on_every_rank(42));
  // The checksum sees a change of one bit in one value.
  std::vector<float> params(1001, 0.5f);
  const uint64_t before = train::parameter_checksum(params);
  params[1000] = std::nextafter(0.5f, 1.0f);
  EXPECT_NE(before, train::parameter_checksum(params));
}

class DataParallelMpirun : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!train::built_with_mpi()) GTEST_SKIP() << "skipped: this build has no MPI (CMake did not find libopenmpi-dev)";
    if (mpirun_path().empty()) GTEST_SKIP() << "skipped: mpirun is not on the PATH (openmpi-bin)";
    REQUIRE_SHARED(testing::tokenizer_path());
  }

  // 1 process with --batch 4 vs 2 ranks with --batch 2 (8 records per step with --grad-accum 2) for 20
  // steps, the 2-rank run stopped after step 10 and resumed by `resume_ranks` ranks. The runs differ
  // only in the order of float sums; AdamW amplifies that over the steps, the more the larger the
  // learning rate: at 3e-3 the curves agree to ~2e-7 and the weights to ~3e-7 after 20 steps (at
  // 3e-2 to ~3e-5: the runs are still the same, but the test could no longer tell).
  void expect_two_ranks_match_one_process(PositionEncoding position, int resume_ranks) {
    ScratchDir dir;
    const std::string model = write_tiny_model(dir, "model", position), data = write_dataset(dir);
    const std::string common = " --grad-accum 2 --max-steps 20 --lr 3e-3 --warmup 2 --min-lr 1e-4 --weight-decay 0.1 "
                               "--clip 0.5 --eval-split 0.2 --eval-every 5 --save-every 5 --seed 7 ";
    const CliRun one = run_command_line(finetune("-m " + model + " --data " + data + " -o " + dir / "one --batch 4" +
                                                 common + "-t 1"), dir);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const CliRun first = run_command_line(
        mpirun_finetune(2, "-m " + model + " --data " + data + " -o " + dir / "two --batch 2" + common + "--stop-after 10"),
        dir);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_NE(first.err.find("data parallel: 2 ranks"), std::string::npos) << first.err;
    EXPECT_EQ(first.err.find("rank 1"), std::string::npos) << "rank 1 should be silent:\n" << first.err;
    const CliRun resumed = run_command_line(
        resume_ranks == 2 ? mpirun_finetune(2, "--resume " + dir / "two -o " + dir / "two")
                          : finetune("--resume " + dir / "two -o " + dir / "two --batch 4 -t 1"),
        dir);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_NE(resumed.err.find("at step 10"), std::string::npos) << resumed.err;
    EXPECT_EQ(resumed.err.find("warning"), std::string::npos) << resumed.err;
    expect_same_curve(dir / "one/train_log.csv", dir / "two/train_log.csv", 1e-6);
    EXPECT_EQ(csv_rows(dir / "one/train_log.csv").size(), 21u);
    const double difference = max_relative_weight_difference(dir / "one/model", dir / "two/model");
    EXPECT_LE(difference, 1e-6);
    std::cerr << "largest relative difference of a weight tensor after 20 steps: " << difference << "\n";
  }
};

TEST_F(DataParallelMpirun, TwoRanksMatchOneProcessRope) { expect_two_ranks_match_one_process(PositionEncoding::Rope, 2); }

TEST_F(DataParallelMpirun, TwoRanksResumedByOneProcessMatchOneProcessAlibi) {
  expect_two_ranks_match_one_process(PositionEncoding::Alibi, 1);
}

// LoRA (every target, no dropout: a dropout mask follows a record's place in its micro-batch, which
// differs between the layouts) over 2 ranks gives the curve and the adapter of one process.
TEST_F(DataParallelMpirun, TwoRanksMatchOneProcessLora) {
  ScratchDir dir;
  const std::string model = write_tiny_model(dir, "model", PositionEncoding::Rope), data = write_dataset(dir);
  const std::string common = " --grad-accum 2 --max-steps 20 --lr 3e-3 --warmup 2 --min-lr 1e-4 --weight-decay 0.1 "
                             "--clip 0.5 --eval-split 0.2 --eval-every 5 --save-every 10 --seed 7 "
                             "--lora r=4,alpha=8,dropout=0,targets=W_pack,o_proj,gate_proj,up_proj,down_proj ";
  const CliRun one = run_command_line(
      finetune("-m " + model + " --data " + data + " -o " + dir / "one --batch 4" + common + "-t 1"), dir);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const CliRun two =
      run_command_line(mpirun_finetune(2, "-m " + model + " --data " + data + " -o " + dir / "two --batch 2" + common), dir);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("data parallel: 2 ranks"), std::string::npos) << two.err;
  expect_same_curve(dir / "one/train_log.csv", dir / "two/train_log.csv", 1e-6);
  const double difference = max_relative_adapter_difference(model, dir / "one/adapter", dir / "two/adapter");
  EXPECT_LE(difference, 1e-6);
  std::cerr << "largest relative difference of an adapter matrix after 20 steps: " << difference << "\n";
}

TEST_F(DataParallelMpirun, ResumingWithAnotherGlobalBatchIsRefused) {
  ScratchDir dir;
  const std::string model = write_tiny_model(dir, "model", PositionEncoding::Rope), data = write_dataset(dir);
  const CliRun first = run_command_line(
      mpirun_finetune(2, "-m " + model + " --data " + data + " -o " + dir / "two --batch 2 --max-steps 2"), dir);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const CliRun one = run_command_line(finetune("--resume " + dir / "two -o " + dir / "two --max-steps 4 -t 1"), dir);
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_NE(one.err.find("error: --resume "), std::string::npos) << one.err;
  EXPECT_NE(one.err.find("2 rank(s) x --batch 2 x --grad-accum 1 = 4 records per step"), std::string::npos) << one.err;
  EXPECT_NE(one.err.find("mpirun -np 2"), std::string::npos) << one.err;
  const CliRun four = run_command_line(mpirun_finetune(4, "--resume " + dir / "two -o " + dir / "two --max-steps 4"), dir);
  EXPECT_NE(four.exit_code, 0);
  EXPECT_NE(four.err.find("would take 8"), std::string::npos) << four.err;
  // One-step runs are a single process.
  const CliRun one_step = run_command_line(mpirun_finetune(2, "-m " + model + " --one-step x.json"), dir);
  EXPECT_NE(one_step.exit_code, 0);
  EXPECT_NE(one_step.err.find("--one-step runs in one process"), std::string::npos) << one_step.err;
}

TEST_F(DataParallelMpirun, ErrorOnRankZeroEndsTheJobWithItsMessageOnEveryRank) {
  ScratchDir dir;
  const std::string model = write_tiny_model(dir, "model", PositionEncoding::Rope), data = write_dataset(dir);
  // Rank 0 alone writes checkpoints: a full disk at step 4 fails it while rank 1 waits in the next step.
  const CliRun r = run_command_line("BAICHUAN_CHECKPOINT_FAULT=fail:4 " +
                                        mpirun_finetune(2, "-m " + model + " --data " + data + " -o " + dir / "out" +
                                                               " --batch 2 --max-steps 8 --save-every 2"),
                                    dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("error: rank 0 of 2: checkpoint at step 4 not written"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("error: rank 1 of 2: stopped by mpirun"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir / "out/checkpoint-000002/training_state.json"));
  EXPECT_FALSE(fs::exists(dir / "out/checkpoint-000004"));
}

// The pid of the baichuan process that is rank `rank` of the job writing to `out_dir`, or 0.
pid_t find_rank_pid(const std::string& out_dir, int rank) {
  const std::string rank_var = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline, env_text;
    try {
      cmdline = read_text_file(entry.path() / "cmdline");
      env_text = read_text_file(entry.path() / "environ");
    } catch (const std::exception&) {
      continue;  // gone, or not ours
    }
    for (char& c : cmdline) c = c == '\0' ? ' ' : c;
    if (cmdline.find(" finetune ") == std::string::npos || cmdline.find(out_dir) == std::string::npos ||
        cmdline.find("mpirun") != std::string::npos)
      continue;
    if (('\0' + env_text).find('\0' + rank_var + '\0') != std::string::npos)
      return static_cast<pid_t>(std::stol(name));
  }
  return 0;
}

TEST_F(DataParallelMpirun, KilledRankEndsTheJobWithAClearErrorAndAValidCheckpoint) {
  ScratchDir dir;
  const std::string model = write_tiny_model(dir, "model", PositionEncoding::Rope), data = write_dataset(dir);
  const std::string out = dir / "killed", err = dir / "killed.err";
  const std::string command = mpirun_finetune(2, "-m " + model + " --data " + data + " -o " + out +
                                                     " --batch 2 --schedule constant --max-steps 1000000 --save-every 20") +
                              " >/dev/null 2>" + err + " </dev/null";
  // exec: the child is mpirun itself, which stops its ranks when it gets SIGTERM.
  const pid_t job = fork();
  ASSERT_GE(job, 0);
  if (job == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Whatever happens below, the job must not outlive the test.
  struct StopAtExit {
    pid_t pid;
    ~StopAtExit() {
      if (pid <= 0) return;
      kill(pid, SIGTERM);  // mpirun passes it on to the ranks
      for (int i = 0; i < 100 && waitpid(pid, nullptr, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, WNOHANG);
    }
  } stop_at_exit{job};
  std::string checkpoint;
  for (int i = 0; i < 600 && checkpoint.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      checkpoint = train::find_training_checkpoint(out);
    } catch (const Error&) {
    }
  }
  ASSERT_FALSE(checkpoint.empty()) << (fs::exists(err) ? read_text_file(err) : "");
  const pid_t rank1 = find_rank_pid(out, 1);
  ASSERT_GT(rank1, 0) << read_text_file(err);
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  // mpirun ends the job: no rank waits forever for the dead one.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 600 && done == 0; ++i) {
    done = waitpid(job, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(done, job) << "the job did not end within 30 s of a rank being killed";
  stop_at_exit.pid = 0;
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string messages = read_text_file(err);
  EXPECT_NE(messages.find("error: rank 0 of 2: stopped by mpirun: another rank failed or was killed"), std::string::npos)
      << messages;
  EXPECT_NE(messages.find("continue with --resume " + out), std::string::npos) << messages;
  EXPECT_NE(messages.find("exited on signal 9"), std::string::npos) << messages;  // mpirun's own report
  // The newest complete checkpoint resumes (2 more steps, same ranks).
  const std::string last = train::find_training_checkpoint(out);
  const int64_t step = read_json_file((fs::path(last) / train::kCheckpointManifest).string()).at("step").get<int64_t>();
  const CliRun resumed = run_command_line(
      mpirun_finetune(2, "--resume " + out + " -o " + out + " --max-steps " + std::to_string(step + 2)), dir);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("at step " + std::to_string(step)), std::string::npos) << resumed.err;
  EXPECT_TRUE(fs::exists(fs::path(out) / "model/model.safetensors"));
}

}  // namespace data_parallel_test
}  // namespace baichuan
