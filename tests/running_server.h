// The HTTP server in-process on a free port, on its own thread for the length of a test (the server
// tests' fixture).
#pragma once
#include <httplib.h>

#include <thread>
#include <utility>

#include "server/http_server.h"
#include "server/scheduler.h"

namespace baichuan::server {

// Stops and joins on destruction.
struct RunningServer {
  RunningServer(const Model& model, ThreadPool& pool, SchedulerOptions so, ServerOptions options)
      : scheduler(model, pool, so), http(scheduler, std::move(options)) {
    port = http.bind();
    thread = std::thread([this] { http.listen(); });
  }
  ~RunningServer() {
    http.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);  // AddressSanitizer builds are slow
    return c;
  }
  Scheduler scheduler;
  HttpServer http;
  int port = 0;
  std::thread thread;
};

}  // namespace baichuan::server
