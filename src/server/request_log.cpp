#include "server/request_log.h"

#include <cstdio>

#include "core/error.h"

namespace baichuan::server {

namespace {

// A client's method or path as one printable word: no control bytes or spaces that could forge a
// log line, no megabyte of it either.
std::string printable(const std::string& s) {
  constexpr size_t kMostBytes = 256;
  if (s.empty()) return "-";
  std::string out = s.substr(0, kMostBytes);
  for (char& c : out)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) c = '?';
  if (s.size() > kMostBytes) out += "...";
  return out;
}

}  // namespace

std::string format_request_record(const RequestRecord& r) {
  std::string line = cat(r.client, " ", printable(r.method), " ", printable(r.path), " ", r.status);
  if (r.prompt_tokens >= 0) line += cat(" prompt=", r.prompt_tokens);
  if (r.completion_tokens >= 0) line += cat(" completion=", r.completion_tokens);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, " %.3fs", r.seconds);
  line += seconds;
  if (!r.note.empty()) line += " (" + r.note + ")";
  return line;
}

}  // namespace baichuan::server
