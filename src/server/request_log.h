// The request log of `baichuan serve`: one line per answered request (and per connection refused
// before it sent one) on stderr, e.g.
//   127.0.0.1 POST /v1/chat/completions 200 prompt=21 completion=64 1.842s
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace baichuan::server {

struct RequestRecord {
  std::string client;        // the client's IP address
  std::string method, path;  // empty when no request line was read
  int status = 0;
  int64_t prompt_tokens = -1, completion_tokens = -1;  // -1: not a generation, or not that far
  double seconds = 0;        // from the request's first byte to the end of the answer
  std::string note;          // why a connection was refused or cut short, else empty
};

using RequestLogger = std::function<void(const RequestRecord&)>;  // called from many threads at once

std::string format_request_record(const RequestRecord& record);

}  // namespace baichuan::server
