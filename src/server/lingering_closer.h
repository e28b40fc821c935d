// Closes client sockets without resetting them. close() on a socket with unread bytes makes the
// kernel send a TCP reset, and a reset can destroy an answer the client has not read yet: a 503
// sent before the request was read, a 413 sent before the rest of a body. So our side is shut down
// first (the client sees the answer, then the end), what the client still sends is read and dropped
// until it closes too or `linger` passes, and only then is the socket closed. One thread does this
// for every socket, so a client that never closes costs no connection thread.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

namespace baichuan::server {

class LingeringCloser {
 public:
  // At most `max_sockets` linger at a time; more are closed at once.
  LingeringCloser(std::chrono::milliseconds linger, size_t max_sockets);
  ~LingeringCloser();  // closes what still lingers
  LingeringCloser(const LingeringCloser&) = delete;
  LingeringCloser& operator=(const LingeringCloser&) = delete;

  void close(int fd);  // takes the socket; thread-safe
  size_t lingering() const;

 private:
  struct Socket {
    int fd;
    std::chrono::steady_clock::time_point deadline;
  };
  void run();

  const std::chrono::milliseconds linger_;
  const size_t max_sockets_;
  int wake_fd_ = -1;  // eventfd: new sockets or stopping
  mutable std::mutex mutex_;
  std::vector<Socket> incoming_;
  size_t count_ = 0;  // incoming and lingering
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace baichuan::server
