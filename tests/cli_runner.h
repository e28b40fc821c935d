// Runs the `baichuan` CLI built with the tests (BAICHUAN_CLI_PATH) and captures its exit code,
// stdout and stderr, for the end-to-end tests of the subcommands.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/mapped_file.h"

namespace baichuan::testing {

struct CliRun {
  int exit_code;
  std::string out, err;
};

// Single-quotes `s` for the shell.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A path in the test temp dir unique to this process (ctest runs tests in parallel processes).
inline std::string temp_path(const std::string& prefix, const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / (prefix + "_" + std::to_string(getpid()) + "_" + name)).string();
}

inline CliRun baichuan_cli(const std::string& args) {
  namespace fs = std::filesystem;
  // ctest runs tests in parallel processes: each run gets its own output files.
  static int counter = 0;
  fs::path dir = fs::path(::testing::TempDir()) / ("cli-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::create_directories(dir);
  std::string out = (dir / "out.txt").string(), err = (dir / "err.txt").string();
  int status = std::system((std::string(BAICHUAN_CLI_PATH) + " " + args + " >" + out + " 2>" + err + " </dev/null").c_str());
  CliRun run{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text_file(out), read_text_file(err)};
  fs::remove_all(dir);
  return run;
}

}  // namespace baichuan::testing
