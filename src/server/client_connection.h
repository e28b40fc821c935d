// One client's TCP connection as httplib reads and writes it, with deadlines so that a slow or
// silent client cannot hold its thread for long: a request's first byte must come within `idle`, its
// line and headers within `header` of that byte, its body within `body` of the headers, and every
// write must go out within `write`. httplib's own read timeout is per read, so a client sending a
// byte now and then never met it. A wait for the client also ends at once when the server stops.
#pragma once
#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "server/request_log.h"

namespace baichuan::server {

struct ConnectionTimeouts {
  std::chrono::milliseconds header{10'000};  // request line and headers, from their first byte
  std::chrono::milliseconds body{30'000};    // the whole body, from the end of the headers
  std::chrono::milliseconds idle{5'000};     // for a request's first byte (after connecting or answering)
  std::chrono::milliseconds write{10'000};   // one write to a client that does not read
};

class ClientConnection : public httplib::Stream {
 public:
  // Takes no ownership of `fd` (non-blocking) or `stop_fd` (readable once the server stops).
  ClientConnection(int fd, std::string client, const ConnectionTimeouts& timeouts, int stop_fd);

  // The connection whose request this thread is handling, or null. httplib runs a request's
  // handler, content provider and logger on the thread that read the request.
  static ClientConnection* current();
  class Scope {  // makes `c` current() on this thread for its lifetime
   public:
    explicit Scope(ClientConnection& c);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

  // Waits for the next request's first byte (up to the idle timeout); false if none comes, the
  // client closes, or the server stops. Starts the header deadline and a new RequestRecord.
  bool wait_for_request();
  void headers_read();  // starts the body deadline
  // A read missed its deadline; in_headers: the one for the request head.
  bool timed_out() const { return timed_out_; }
  bool timed_out_in_headers() const { return timed_out_ && phase_ == Phase::Headers; }
  // The client has closed or reset its side: nobody will read an answer.
  bool peer_gone() const;

  // The request log: a generation's token counts, and the record once the answer is out (also
  // notes a "Connection: close" answer, after which no further request is read).
  void set_usage(int64_t prompt_tokens, int64_t completion_tokens);
  RequestRecord answered(const httplib::Request& req, const httplib::Response& res);
  RequestRecord unanswered(int status, std::string note);  // an answer written outside httplib
  bool was_answered() const { return answered_; }
  bool close_requested() const { return close_; }
  const std::string& client() const { return client_; }
  const ConnectionTimeouts& timeouts() const { return timeouts_; }

  // httplib::Stream
  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

 private:
  enum class Phase { Idle, Headers, Body };
  using Clock = std::chrono::steady_clock;
  bool fill();  // waits for bytes until the deadline; false on timeout, end of stream or stop
  void start(Phase phase, std::chrono::milliseconds timeout);
  double seconds() const;

  int fd_, stop_fd_;
  std::string client_;
  ConnectionTimeouts timeouts_;
  Phase phase_ = Phase::Idle;
  Clock::time_point deadline_{}, started_{};
  bool timed_out_ = false, close_ = false, answered_ = false;
  RequestRecord record_;
  char buffer_[4096];  // httplib reads the head a byte at a time
  size_t begin_ = 0, end_ = 0;
};

}  // namespace baichuan::server
