// The one exception type of the project: a message a user can act on.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace baichuan {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Concatenates any streamable values into one string: cat("tensor '", name, "' has ", n, " rows").
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace baichuan
