#include "server/client_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace baichuan::server {

namespace {

thread_local ClientConnection* t_current = nullptr;

int poll_ms(std::chrono::steady_clock::duration left) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  auto* a = reinterpret_cast<sockaddr*>(&addr);
  ip.clear();
  port = 0;
  if ((peer ? getpeername(fd, a, &len) : getsockname(fd, a, &len)) != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
  }
  ip = text;
}

}  // namespace

ClientConnection::ClientConnection(int fd, std::string client, const ConnectionTimeouts& timeouts, int stop_fd)
    : fd_(fd), stop_fd_(stop_fd), client_(std::move(client)), timeouts_(timeouts) {}

ClientConnection* ClientConnection::current() { return t_current; }
ClientConnection::Scope::Scope(ClientConnection& c) { t_current = &c; }
ClientConnection::Scope::~Scope() { t_current = nullptr; }

void ClientConnection::start(Phase phase, std::chrono::milliseconds timeout) {
  phase_ = phase;
  deadline_ = Clock::now() + timeout;
  timed_out_ = false;
}

bool ClientConnection::wait_for_request() {
  start(Phase::Idle, timeouts_.idle);
  if (begin_ == end_ && !fill()) return false;  // else a pipelined request is already here
  start(Phase::Headers, timeouts_.header);
  started_ = Clock::now();
  record_ = RequestRecord{};
  record_.client = client_;
  answered_ = false;
  return true;
}

void ClientConnection::headers_read() { start(Phase::Body, timeouts_.body); }

bool ClientConnection::fill() {
  for (;;) {
    const auto left = deadline_ - Clock::now();
    if (left <= Clock::duration::zero()) {
      timed_out_ = true;
      return false;
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, poll_ms(left));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;  // the deadline is checked above
    if (fds[1].revents != 0) return false;  // the server is stopping
    const ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, 0);
    if (n > 0) {
      begin_ = 0;
      end_ = static_cast<size_t>(n);
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
  }
}

ssize_t ClientConnection::read(char* ptr, size_t size) {
  if (begin_ == end_ && !fill()) return timed_out_ ? -1 : 0;
  const size_t n = std::min(size, end_ - begin_);
  std::memcpy(ptr, buffer_ + begin_, n);
  begin_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t ClientConnection::write(const char* ptr, size_t size) {
  const auto deadline = Clock::now() + timeouts_.write;
  for (;;) {
    const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return -1;
    pollfd out{fd_, POLLOUT, 0};
    if (::poll(&out, 1, poll_ms(left)) < 0 && errno != EINTR) return -1;
  }
}

bool ClientConnection::peer_gone() const {
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLRDHUP)) return true;
  char byte;  // readable: a pipelined request (still there) or the end of the stream (gone)
  const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool ClientConnection::is_readable() const {
  if (begin_ != end_) return true;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

bool ClientConnection::is_writable() const { return !peer_gone(); }

void ClientConnection::get_remote_ip_and_port(std::string& ip, int& port) const { address_of(fd_, true, ip, port); }
void ClientConnection::get_local_ip_and_port(std::string& ip, int& port) const { address_of(fd_, false, ip, port); }

void ClientConnection::set_usage(int64_t prompt_tokens, int64_t completion_tokens) {
  record_.prompt_tokens = prompt_tokens;
  record_.completion_tokens = completion_tokens;
}

double ClientConnection::seconds() const { return std::chrono::duration<double>(Clock::now() - started_).count(); }

RequestRecord ClientConnection::answered(const httplib::Request& req, const httplib::Response& res) {
  if (res.get_header_value("Connection") == "close") close_ = true;
  answered_ = true;
  RequestRecord r = record_;
  r.method = req.method;
  r.path = req.path;
  r.status = res.status;
  r.seconds = seconds();
  if (timed_out_) r.note = "timed out";
  return r;
}

RequestRecord ClientConnection::unanswered(int status, std::string note) {
  answered_ = true;
  close_ = true;
  RequestRecord r = record_;
  r.status = status;
  r.seconds = seconds();
  r.note = std::move(note);
  return r;
}

}  // namespace baichuan::server
