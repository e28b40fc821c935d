// The HTTP face of the server (cpp-httplib): OpenAI's /v1/chat/completions, /v1/completions and
// /v1/models, llama.cpp-style /health, /tokenize, /detokenize, Prometheus /metrics and the chat
// page at /. Every generation goes through the Scheduler; a handler thread only waits for the
// pieces its request's callbacks hand over, so slow clients never hold up the batch. Connections
// are accepted, capped and timed by HttpListener.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "server/http_listener.h"
#include "server/request_log.h"
#include "server/scheduler.h"
#include "tokenizer/chat_template.h"

namespace baichuan::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (see bind())
  std::string api_key;                   // non-empty: /v1/*, /tokenize, /detokenize, /metrics need "Bearer KEY"
  size_t max_body_bytes = 1u << 20;      // larger request bodies get 413
  std::string model_name = "baichuan";   // the id in /v1/models and in every answer
  ChatTemplateConfig chat;               // the model's chat prompt settings (its special_tokens_in_messages
                                         // is replaced by allow_special_in_messages)
  int64_t default_max_tokens = 2048;     // max_tokens when a request sets none
  ConnectionLimits connections;          // caps on open connections and the deadlines of each
  // false: "<reserved_107>", "</s>", ... typed in a chat message stay text, so a client cannot forge
  // a turn; true: they become those tokens, as the official tokenizer makes them.
  bool allow_special_in_messages = false;
  RequestLogger request_log;             // one call per answer (and per refused connection); may be empty
};

// Prometheus text exposition of the scheduler's counters.
std::string metrics_text(const SchedulerStats& stats);

// Whether `host` (a --host value) is reachable from this machine only: localhost, 127.0.0.0/8, ::1.
bool is_loopback_host(const std::string& host);

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds options.host:options.port and returns the port (the chosen one for port 0). Throws Error.
  int bind();
  // Serves until stop(); call after bind(). Returns at once if stop() came first.
  void listen();
  // Safe from any thread (a signal watcher, a test): refuses new work, cancels the generations in
  // flight so their handlers return, and makes listen() return.
  void stop();

  const ServerOptions& options() const { return options_; }

 private:
  struct Routes;  // the handlers, in http_server.cpp
  // Registers a request's scheduler id so stop() can cancel it; false once stopping.
  bool track(uint64_t id);
  void untrack(uint64_t id);

  Scheduler& scheduler_;
  ServerOptions options_;
  std::unique_ptr<Routes> routes_;         // before http_: its handlers call into routes_
  std::unique_ptr<HttpListener> http_;
  int64_t started_ = 0;  // unix time, the "created" of the model in /v1/models

  std::mutex mutex_;
  std::set<uint64_t> in_flight_;
  std::atomic<bool> stopping_{false};
};

}  // namespace baichuan::server
