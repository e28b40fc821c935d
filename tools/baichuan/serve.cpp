// baichuan serve: the OpenAI-compatible HTTP server (src/server/) over one loaded model.
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "commands.h"
#include "common.h"
#include "server/http_server.h"
#include "server/scheduler.h"

namespace baichuan::cli {

namespace {

// The id shown in /v1/models: the checkpoint's file or folder name.
std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  std::string name = p.filename().string();
  if (name.empty() || name == "." || name == "..") name = p.parent_path().filename().string();
  return name.empty() ? "baichuan" : name;
}

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0 + 0.5));
}

std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;  // IPv6 literal
}

// SIGINT/SIGTERM are blocked in every thread and taken by one watcher thread with sigwait, so the
// shutdown runs as ordinary code (stop the HTTP server, then the scheduler) instead of in a handler.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any other thread exists: they inherit it
    thread_ = std::thread([this] { watch(); });
  }
  ~SignalWatcher() {
    {
      std::lock_guard lock(mutex_);
      quitting_ = true;
      server_ = nullptr;
    }
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }
  // Returns false if a signal already came: do not start serving.
  bool serve(server::HttpServer* server) {
    std::lock_guard lock(mutex_);
    server_ = server;
    return !signalled_;
  }
  void forget_server() {
    std::lock_guard lock(mutex_);
    server_ = nullptr;
  }

 private:
  void watch() {
    for (;;) {
      int sig = 0;
      sigwait(&set_, &sig);
      std::lock_guard lock(mutex_);
      if (quitting_) return;
      if (signalled_ && !server_) std::_Exit(128 + sig);  // a second signal while loading: give up now
      signalled_ = true;
      if (server_) {
        std::cerr << "baichuan serve: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", shutting down\n";
        server_->stop();
      } else {
        std::_Exit(128 + sig);  // still loading the model: nothing to finish cleanly
      }
    }
  }

  sigset_t set_;
  std::mutex mutex_;
  server::HttpServer* server_ = nullptr;
  bool signalled_ = false, quitting_ = false;
  std::thread thread_;
};

struct ServeCommand {
  ModelOptions model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t ctx = 4096;
  int queue = 16;
  size_t max_body = 1u << 20;
  std::string api_key, name;
  int max_connections = 128, max_per_client = 64;
  double header_timeout = 10, body_timeout = 30, idle_timeout = 5;
  bool allow_special = false, request_log = true;

  int run() {
    std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-answer is a failed write, not a dead server
    SignalWatcher signals;
    auto m = model.load();
    ThreadPool pool(model.thread_count());
    server::SchedulerOptions so;
    so.parallel = parallel;
    so.context = ctx;
    so.max_queue = queue;
    server::Scheduler scheduler(*m, pool, so);

    server::ServerOptions options;
    options.host = host;
    options.port = port;
    options.api_key = api_key;
    options.max_body_bytes = max_body;
    options.model_name = name.empty() ? default_model_name(model.path) : name;
    options.chat = chat_template_config(*m);
    options.default_max_tokens = m->generation().max_new_tokens;
    options.connections.max_connections = max_connections;
    options.connections.max_per_client = max_per_client;
    options.connections.timeouts.header = milliseconds(header_timeout);
    options.connections.timeouts.body = milliseconds(body_timeout);
    options.connections.timeouts.idle = milliseconds(idle_timeout);
    options.allow_special_in_messages = allow_special;
    std::mutex log_mutex;
    if (request_log)
      options.request_log = [&log_mutex](const server::RequestRecord& r) {
        const std::string line = "baichuan serve: " + server::format_request_record(r) + "\n";
        std::lock_guard lock(log_mutex);
        std::cerr << line << std::flush;
      };
    if (!server::is_loopback_host(host) && api_key.empty())
      std::cerr << "baichuan serve: warning: --host " << host
                << " without --api-key: anyone who can reach this address can use the model\n";
    server::HttpServer http(scheduler, options);
    const int bound = http.bind();
    if (!signals.serve(&http)) return 0;
    std::cerr << "baichuan serve: listening on http://" << url_host(host) << ":" << bound << std::endl;
    http.listen();
    signals.forget_server();
    http.stop();  // cancels what is still in flight; the scheduler then stops when it goes out of scope
    std::cerr << "baichuan serve: stopped\n";
    return 0;
  }
};

}  // namespace

Run add_serve(CLI::App& app) {
  auto cmd = std::make_shared<ServeCommand>();
  cmd->model.add(app);
  cmd->model.add_lora(app);
  app.add_option("--host", cmd->host, "Address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  app.add_option("--port", cmd->port, "Port (0 = any free port; the chosen one is printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--parallel", cmd->parallel, "Requests decoded together, each in its own slot")
      ->capture_default_str()
      ->check(at_least(1));
  app.add_option("-c,--ctx", cmd->ctx, "Context per slot in tokens: prompt + answer")
      ->capture_default_str()->check(at_least(1));
  app.add_option("--queue", cmd->queue, "Requests that may wait for a slot; more get 503")
      ->capture_default_str()
      ->check(at_least(0));
  app.add_option("--max-body", cmd->max_body, "Largest request body in bytes; larger ones get 413")
      ->capture_default_str()
      ->check(at_least(1));
  app.add_option("--api-key", cmd->api_key,
                 "Require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize and /metrics");
  app.add_option("--name", cmd->name, "Model id shown in /v1/models (default: the file or folder name)");
  app.add_option("--max-connections", cmd->max_connections,
                 "Open connections in total (each has its own thread); more are answered 503")
      ->capture_default_str()
      ->check(at_least(1));
  app.add_option("--max-connections-per-client", cmd->max_per_client,
                 "Open connections from one IP address; more are answered 503")
      ->capture_default_str()
      ->check(at_least(1));
  app.add_option("--header-timeout", cmd->header_timeout,
                 "Seconds for a request's line and headers to arrive, from their first byte; then 408")
      ->capture_default_str()
      ->check(number_above(0, false));
  app.add_option("--body-timeout", cmd->body_timeout, "Seconds for a request body to arrive; then 408")
      ->capture_default_str()
      ->check(number_above(0, false));
  app.add_option("--keep-alive-timeout", cmd->idle_timeout, "Seconds an idle connection waits for its next request")
      ->capture_default_str()
      ->check(number_above(0, false));
  app.add_flag("--allow-special-in-messages", cmd->allow_special,
               "Let <reserved_106>, <reserved_107>, <s>, </s> typed in chat messages become those tokens, as the "
               "official tokenizer does (default: they stay text, so a client cannot forge a turn)");
  app.add_flag("!--no-request-log", cmd->request_log, "Do not log a line per request on stderr");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
