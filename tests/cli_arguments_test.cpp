// One rule for arguments across the subcommands (issue 11, point 13) and the interactive chat's
// controls (point 14): errors are one `error:` line with exit 1; Ctrl-C stops an answer and keeps
// the conversation.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "cli_runner.h"
#include "shared_data.h"

namespace baichuan {
namespace cli_arguments_test {  // named, not anonymous: the tests compile as a unity build

using testing::baichuan_cli;
using testing::quote;
using testing::shared_path;

std::string tiny() { return shared_path("reference/b2-7b-tiny"); }

void expect_argument_error(const std::string& args, const std::string& message) {
  auto run = baichuan_cli(args);
  EXPECT_EQ(run.exit_code, 1) << args;
  EXPECT_EQ(run.err.rfind("error: ", 0), 0u) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << "one line:\n" << run.err;
  EXPECT_NE(run.err.find(message), std::string::npos) << args << "\n" << run.err;
  EXPECT_LT(run.err.size(), 400u) << run.err;
}

TEST(CliArguments, BadNumbersAreOneLineErrorsWithExitOne) {
  REQUIRE_SHARED(tiny());
  const std::string m = " -m " + quote(tiny()) + " -p hi";
  expect_argument_error("generate" + m + " --ctx 0", "--ctx: must be at least 1, got 0");
  expect_argument_error("generate" + m + " --ctx -5", "--ctx: must be at least 1, got -5");
  expect_argument_error("logits" + m + " -o x.f32 --ctx 0", "--ctx: must be at least 1");
  expect_argument_error("generate" + m + " -n -2", "must be at least -1, got -2");
  expect_argument_error("generate" + m + " --seed -7", "--seed: must be at least -1, got -7");
  expect_argument_error("generate" + m + " --temp -1", "--temp: must be at least 0, got -1");
  expect_argument_error("serve -m " + quote(tiny()) + " --header-timeout 0", "--header-timeout: must be more than 0, got 0");
  expect_argument_error("serve -m " + quote(tiny()) + " --parallel 0", "--parallel: must be at least 1, got 0");
  expect_argument_error("generate" + m + " -n " + std::string(300, '9'), "must be an integer");
  expect_argument_error("generate" + m + " --no-such-flag", "--no-such-flag");
  expect_argument_error("chat -m " + quote(tiny()) + " --ctx 0", "--ctx: must be at least 1");
}

TEST(CliArguments, TemperatureZeroIsGreedyAndSeedMinusOneIsPrinted) {
  REQUIRE_SHARED(tiny());
  const std::string base = "generate -m " + quote(tiny()) + " -p " + quote("床前明月光，") + " -n 6 --json";
  auto greedy = baichuan_cli(base + " --greedy");
  auto temp0 = baichuan_cli(base + " --temp 0");
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  ASSERT_EQ(temp0.exit_code, 0) << temp0.err;
  EXPECT_EQ(temp0.out, greedy.out);
  EXPECT_EQ(temp0.err.find("sampling seed"), std::string::npos) << "greedy needs no seed";

  auto random = baichuan_cli(base + " --seed -1 --temp 1.5");
  ASSERT_EQ(random.exit_code, 0) << random.err;
  auto at = random.err.find("sampling seed ");
  ASSERT_NE(at, std::string::npos) << random.err;
  const std::string seed = random.err.substr(at + 14, random.err.find(' ', at + 14) - (at + 14));
  auto again = baichuan_cli(base + " --temp 1.5 --seed " + seed);
  EXPECT_EQ(again.out, random.out) << "the printed seed repeats the run";

  // -n -1 runs until the context is full (1 prompt token + 11 cached answer tokens, and a 12th answer
  // token that needs no cache row) (a huge -n no longer overflows the cache size).
  for (std::string n : {"-1", "9223372036854775807"}) {
    auto run = baichuan_cli("generate -m " + quote(tiny()) + " -p hi --greedy --ignore-eos --ctx 12 --json -n " + n);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("generated 12 tokens"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("finish: length"), std::string::npos) << run.err;
  }
}

// A full disk under the results is an error, not exit 0 (issue 11, point 12).
TEST(CliArguments, OutputToAFullDiskIsAnError) {
  REQUIRE_SHARED(tiny());
  if (!file_exists("/dev/full")) GTEST_SKIP() << "no /dev/full here";
  const std::string err = testing::temp_path("cliargs", "full.err");
  const int status = std::system(
      (testing::cli_program() + " generate -m " + quote(tiny()) + " -p hi -n 20 --greedy --json >/dev/full 2>" + err)
          .c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(read_text_file(err).find("error: writing the output to stdout failed: No space left on device"),
            std::string::npos)
      << read_text_file(err);
}

// Runs `baichuan chat` with a pipe for stdin; returns what it printed, after `script` has written
// its lines and signals.
struct ChatProcess {
  pid_t pid = -1;
  int in = -1;
  std::string out_path, err_path;

  explicit ChatProcess(const std::string& args) {
    out_path = testing::temp_path("chatproc", "out.txt");
    err_path = testing::temp_path("chatproc", "err.txt");
    const std::string cmd = "exec " + testing::cli_program() + " " + args + " >" + out_path + " 2>" + err_path;
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    pid = fork();
    if (pid == 0) {
      dup2(fds[0], 0);
      close(fds[1]);
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[0]);
    in = fds[1];
  }
  void say(const std::string& line) { (void)!write(in, line.data(), line.size()); }
  int finish() {
    close(in);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string err() const { return file_exists(err_path) ? read_text_file(err_path) : ""; }
};

TEST(CliChat, CtrlCStopsTheAnswerAndKeepsTheConversation) {
  REQUIRE_SHARED(tiny());
  ChatProcess chat("chat -m " + quote(tiny()) + " -n -1 --ignore-eos --greedy -t 1 --ctx 4096");
  chat.say("写一首诗\n");
  // Wait for the answer to be under way (it would run to the 4096-token context otherwise).
  for (int i = 0; i < 200 && chat.err().find("KV cache") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(chat.pid, SIGINT);
  for (int i = 0; i < 200 && chat.err().find("stopped by Ctrl-C") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  chat.say("/help\n");
  chat.say("/exit\n");
  EXPECT_EQ(chat.finish(), 0);
  const std::string err = chat.err(), out = read_text_file(chat.out_path);
  EXPECT_NE(err.find("stopped by Ctrl-C"), std::string::npos) << err;
  EXPECT_NE(out.find("/reset"), std::string::npos) << "/help lists the commands:\n" << out;
}

TEST(CliChat, SaysWhenHistoryIsTruncated) {
  REQUIRE_SHARED(tiny());
  ChatProcess chat("chat -m " + quote(tiny()) + " -n 8 --greedy --ignore-eos --ctx 24");
  for (const char* line : {"你好\n", "请写一首关于春天的长诗，越长越好\n", "再写一首\n", "/exit\n"}) chat.say(line);
  EXPECT_EQ(chat.finish(), 0);
  EXPECT_NE(chat.err().find("history truncated"), std::string::npos) << chat.err();
}

// -n -1 (no answer limit) keeps the official room for the answer, so a long first message is kept
// whole (it reserved the whole context and kept one prompt token), and that long prompt shows its
// progress and speed.
TEST(CliChat, NoAnswerLimitKeepsALongMessageAndShowsItsProgress) {
  REQUIRE_SHARED(tiny());
  ChatProcess chat("chat -m " + quote(tiny()) + " -n -1 --greedy -t 1 --ctx 4096");
  std::string long_line;
  for (int i = 0; i < 420; ++i) long_line += "春天的花 ";  // ~1260 tokens: more than 1024, less than 4096 - 2048
  chat.say(long_line + "\n");
  for (int i = 0; i < 400 && chat.err().find("prompt: 100%") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(chat.pid, SIGINT);  // the answer would run to the end of the context
  for (int i = 0; i < 200 && chat.err().find("stopped by Ctrl-C") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  chat.say("/exit\n");
  EXPECT_EQ(chat.finish(), 0);
  const std::string err = chat.err();
  EXPECT_EQ(err.find("history truncated"), std::string::npos) << err;
  EXPECT_NE(err.find("prompt: 100%"), std::string::npos) << "the long message's progress:\n" << err;
  EXPECT_NE(err.find(" tokens/s, "), std::string::npos) << err;
}

}  // namespace cli_arguments_test
}  // namespace baichuan
