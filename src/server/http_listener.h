// The accept loop of the HTTP server, ours rather than httplib's. httplib 0.11.4 hands every
// accepted socket to a fixed pool of threads, and a thread then waits for its request as long as
// the client keeps trickling bytes (the read timeout is per read): 40 clients sending a header line
// a second held every thread and /health went unanswered. Here
//   - each connection is checked against the caps (in total, per client IP address) on the
//     accepting thread, before it can hold anything; over a cap it is answered 503 with Retry-After
//     and closed without a reset (LingeringCloser);
//   - every admitted connection has a thread of its own at once (threads <= max_connections), so a
//     slow client holds only its own thread and never queues anyone else behind it;
//   - ClientConnection's deadlines end requests that arrive too slowly (408) and idle keep-alives.
// httplib still parses, routes and answers each request (Server::process_request).
#pragma once
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/client_connection.h"
#include "server/lingering_closer.h"
#include "server/request_log.h"

namespace baichuan::server {

struct ConnectionLimits {
  int max_connections = 128;  // open connections in total
  int max_per_client = 64;    // open connections from one IP address
  ConnectionTimeouts timeouts;
};

class HttpListener : public httplib::Server {
 public:
  HttpListener(ConnectionLimits limits, RequestLogger log);
  ~HttpListener() override;

  // Binds and listens; returns the port (the chosen one for port 0), -1 if the address cannot be bound.
  int bind(const std::string& host, int port);
  // Serves until stop(), then waits for every connection to end. Returns at once if stop() came first.
  void run();
  // Safe from any thread at any time: refuses new connections, wakes every wait for a client, ends
  // streamed answers at their next piece, and makes run() return.
  void stop();

 private:
  struct Job {
    int fd = -1;
    std::string client;
  };
  void accept_one(int listen_fd);
  void refuse(int fd, const std::string& client, const std::string& why);
  void serve(int fd, const std::string& client);  // one connection's requests, on its thread
  void answer_header_timeout(ClientConnection& connection);
  void release(const std::string& client);
  void work();

  const ConnectionLimits limits_;
  const RequestLogger log_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, readable once stopping
  std::atomic<bool> stopping_{false};
  LingeringCloser closer_;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  int open_ = 0;
  std::map<std::string, int> open_per_client_;
  std::deque<Job> jobs_;
  size_t waiting_workers_ = 0;
  bool workers_stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace baichuan::server
