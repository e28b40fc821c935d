// Runs the `baichuan` CLI built with the tests (BAICHUAN_CLI_PATH) and captures its exit code,
// stdout and stderr, for the end-to-end tests of the subcommands.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/mapped_file.h"
#include "test_files.h"

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

// The CLI built with the tests, for every test that runs it. Under CTest each case finds its labels in
// BAICHUAN_TEST_LABELS (tests/labels.cmake); one that runs the CLI without the `cli` label would also run in
// the sanitizer tree, which has no CLI, so it fails here, saying where the label goes.
inline std::string cli_program() {
  const char* labels = std::getenv("BAICHUAN_TEST_LABELS");
  if (labels && ("," + std::string(labels) + ",").find(",cli,") == std::string::npos)
    ADD_FAILURE() << "this test runs the baichuan CLI but its CTest labels are '" << labels
                  << "': add its suite to BAICHUAN_CLI_SUITES or its name to BAICHUAN_CLI_CASES in tests/labels.cmake";
  return BAICHUAN_CLI_PATH;
}

inline CliRun baichuan_cli(const std::string& args) {
  namespace fs = std::filesystem;
  static int counter = 0;
  fs::path dir = test_files_dir() / ("cli-" + std::to_string(counter++));
  fs::create_directories(dir);
  std::string out = (dir / "out.txt").string(), err = (dir / "err.txt").string();
  int status = std::system((cli_program() + " " + args + " >" + out + " 2>" + err + " </dev/null").c_str());
  CliRun run{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text_file(out), read_text_file(err)};
  fs::remove_all(dir);
  return run;
}

}  // namespace baichuan::testing
