#include "server/lingering_closer.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "core/error.h"

namespace baichuan::server {

namespace {

// Reads and drops what the client sent; false once it has closed (or failed).
bool drain(int fd) {
  char sink[4096];
  for (int i = 0; i < 16; ++i) {  // bounded: a fast sender must not keep this thread to itself
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }
  return true;
}

}  // namespace

LingeringCloser::LingeringCloser(std::chrono::milliseconds linger, size_t max_sockets)
    : linger_(linger), max_sockets_(max_sockets) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) fail("cannot create an eventfd for the HTTP server");
  thread_ = std::thread([this] { run(); });
}

LingeringCloser::~LingeringCloser() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  for (const Socket& s : incoming_) ::close(s.fd);
  ::close(wake_fd_);
}

void LingeringCloser::close(int fd) {
  ::shutdown(fd, SHUT_WR);
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && count_ < max_sockets_) {
      incoming_.push_back({fd, std::chrono::steady_clock::now() + linger_});
      ++count_;
      fd = -1;
    }
  }
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

size_t LingeringCloser::lingering() const {
  std::lock_guard lock(mutex_);
  return count_;
}

void LingeringCloser::run() {
  std::vector<Socket> sockets;
  std::vector<pollfd> fds;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      sockets.insert(sockets.end(), incoming_.begin(), incoming_.end());
      incoming_.clear();
    }
    auto now = std::chrono::steady_clock::now();
    auto next = now + std::chrono::seconds(60);
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    for (const Socket& s : sockets) {
      fds.push_back(pollfd{s.fd, POLLIN, 0});
      next = std::min(next, s.deadline);
    }
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0))) < 0 && errno != EINTR) continue;
    if (fds[0].revents != 0) {
      uint64_t n;
      (void)!::read(wake_fd_, &n, sizeof n);
    }
    now = std::chrono::steady_clock::now();
    size_t kept = 0;
    for (size_t i = 0; i < sockets.size(); ++i) {
      const bool open = fds[i + 1].revents == 0 || drain(sockets[i].fd);
      if (open && now < sockets[i].deadline)
        sockets[kept++] = sockets[i];
      else
        ::close(sockets[i].fd);
    }
    const size_t closed = sockets.size() - kept;
    sockets.resize(kept);
    std::lock_guard lock(mutex_);
    count_ -= closed;
  }
  for (const Socket& s : sockets) ::close(s.fd);
}

}  // namespace baichuan::server
