#include "server/http_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <system_error>

#include "core/error.h"
#include "server/api_error.h"
#include "server/openai_response.h"

namespace baichuan::server {

namespace {

constexpr size_t kMaxRequestsPerConnection = 100;  // then the connection is closed (keep-alive max)
constexpr auto kLinger = std::chrono::seconds(2);  // how long a closed connection's input is drained

std::string address_text(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  else if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text, sizeof text);
  return text;
}

// An answer written without httplib (no request was parsed), closing the connection.
std::string raw_answer(int status, const char* reason, const std::string& message, const std::string& code,
                       const char* type, const char* extra_headers) {
  const std::string body = dump_json(error_body(message, type, {}, code));
  return cat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
             "\r\n", extra_headers, "Connection: close\r\n\r\n", body);
}

}  // namespace

HttpListener::HttpListener(ConnectionLimits limits, RequestLogger log)
    : limits_(limits), log_(std::move(log)), closer_(kLinger, 256) {
  if (limits_.max_connections < 1) fail("--max-connections must be at least 1, got ", limits_.max_connections);
  if (limits_.max_per_client < 1)
    fail("--max-connections-per-client must be at least 1, got ", limits_.max_per_client);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) fail("cannot create an eventfd for the HTTP server");
  // What httplib writes in its Keep-Alive header; serve() keeps to it.
  const auto idle_seconds = std::chrono::ceil<std::chrono::seconds>(limits_.timeouts.idle).count();
  set_keep_alive_timeout(static_cast<time_t>(idle_seconds));
  set_keep_alive_max_count(kMaxRequestsPerConnection);
  set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (ClientConnection* c = ClientConnection::current()) {
      RequestRecord record = c->answered(req, res);
      if (log_) log_(record);
    }
  });
}

HttpListener::~HttpListener() {
  stop();
  {
    std::lock_guard lock(mutex_);
    workers_stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(stop_fd_);
}

int HttpListener::bind(const std::string& host, int port) {
  int bound = port;
  if (port == 0)
    bound = bind_to_any_port(host);
  else if (!bind_to_port(host, port))
    bound = -1;
  if (bound < 0) return -1;
  listen_fd_ = svr_sock_;
  // httplib listens with a backlog of 5: a burst of clients would wait for SYN retries. Non-blocking,
  // so a connection reset between poll() and accept() cannot block the loop.
  ::listen(listen_fd_, SOMAXCONN);
  ::fcntl(listen_fd_, F_SETFL, ::fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
  return bound;
}

void HttpListener::run() {
  if (listen_fd_ < 0) return;
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0 || (fds[0].revents & (POLLERR | POLLNVAL))) break;
    if (fds[0].revents & POLLIN) accept_one(listen_fd_);
  }
  {
    std::lock_guard lock(mutex_);
    workers_stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  ::close(listen_fd_);  // later clients are refused by the kernel rather than left waiting
  listen_fd_ = -1;
}

void HttpListener::stop() {
  stopping_ = true;
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  svr_sock_ = INVALID_SOCKET;  // httplib ends a streamed answer when it sees this
}

void HttpListener::accept_one(int listen_fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    // Out of descriptors or memory: the connection stays in the backlog; try again shortly.
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return;
  }
  const int yes = 1;  // stream each token's chunk now, not when Nagle's algorithm lets it go
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  const std::string client = address_text(addr);
  std::string refusal;
  {
    std::lock_guard lock(mutex_);
    auto mine = open_per_client_.find(client);
    const int from_client = mine == open_per_client_.end() ? 0 : mine->second;
    if (open_ >= limits_.max_connections)
      refusal = cat("the server has ", open_, " connections open, its limit");
    else if (fd >= FD_SETSIZE)  // httplib built without CPPHTTPLIB_USE_POLL (Debian's) answers those 500
      refusal = "the server has too many files open";
    else if (from_client >= limits_.max_per_client)
      refusal = cat("the client ", client, " has ", from_client, " connections open, the limit per client");
    else if (jobs_.size() + 1 > waiting_workers_)  // a thread for each connection, unless an idle one takes it
      try {
        workers_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {
        refusal = "the server cannot start another connection thread";
      }
    if (refusal.empty()) {
      ++open_;
      ++open_per_client_[client];
      jobs_.push_back({fd, client});
    }
  }
  if (!refusal.empty()) return refuse(fd, client, refusal);
  work_ready_.notify_one();
}

void HttpListener::refuse(int fd, const std::string& client, const std::string& why) {
  const std::string answer = raw_answer(503, "Service Unavailable", why + ": try again shortly",
                                        "too_many_connections", "server_error", "Retry-After: 1\r\n");
  // A new socket's send buffer takes this whole; if not, the client is gone anyway.
  (void)!::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (log_) log_(RequestRecord{client, {}, {}, 503, -1, -1, 0.0, "refused: " + why});
  closer_.close(fd);
}

void HttpListener::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ++waiting_workers_;
      work_ready_.wait(lock, [this] { return workers_stopping_ || !jobs_.empty(); });
      --waiting_workers_;
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    serve(job.fd, job.client);
  }
}

void HttpListener::serve(int fd, const std::string& client) {
  {
    ClientConnection connection(fd, client, limits_.timeouts, stop_fd_);
    ClientConnection::Scope scope(connection);
    for (size_t served = 1; !stopping_ && connection.wait_for_request(); ++served) {
      bool client_closes = false, ok = false;
      const bool last = served == kMaxRequestsPerConnection;
      try {  // handlers' errors are answered inside; this is for httplib's own (out of memory)
        ok = process_request(connection, last, client_closes,
                             [&connection](httplib::Request&) { connection.headers_read(); });
      } catch (const std::exception&) {
        break;
      }
      if (!connection.was_answered() && connection.timed_out_in_headers()) answer_header_timeout(connection);
      if (!ok || last || client_closes || connection.close_requested() || connection.timed_out()) break;
    }
  }
  release(client);
  closer_.close(fd);
}

// The request line itself did not arrive in time (httplib answers nothing then).
void HttpListener::answer_header_timeout(ClientConnection& connection) {
  const auto ms = connection.timeouts().header.count();
  const std::string answer =
      raw_answer(408, "Request Timeout", cat("the request headers did not arrive within ", ms, " ms"),
                 "request_timeout", "invalid_request_error", "");
  connection.write(answer.data(), answer.size());
  RequestRecord record = connection.unanswered(408, "request headers timed out");
  if (log_) log_(record);
}

void HttpListener::release(const std::string& client) {
  std::lock_guard lock(mutex_);
  --open_;
  auto it = open_per_client_.find(client);
  if (it != open_per_client_.end() && --it->second <= 0) open_per_client_.erase(it);
}

}  // namespace baichuan::server
