#include "server/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <malloc.h>
#include <sys/socket.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include "generate/generation_defaults.h"
#include "server/answer_channel.h"
#include "server/chat_page.h"
#include "server/generation_plan.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace baichuan::server {

using nlohmann::json;

namespace {

// After a request with a body this large, freed memory is handed back to the system: glibc keeps
// what each thread's arena freed, so a burst of megabyte prompts would stay resident for good.
constexpr size_t kTrimAfterBodyBytes = 64 * 1024;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  send_json(res, e.status, error_body(e));
}

// Compares without stopping at the first difference, so the time taken does not leak the key.
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The JSON routes take only JSON. A web page may send a text/plain, form or multipart POST to any
// address without the browser asking first (no CORS preflight), but not an application/json one:
// requiring it keeps pages the user visits from driving a local server.
bool is_json(const std::string& content_type) {
  std::string type = lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  return type == "application/json";
}

constexpr int64_t kLogPromptProgressTokens = 1024;  // prompts this long get progress lines in the log

// A long prompt's progress in serve's log (stderr), at each quarter: the scheduler feeds it in
// chunks, and without these lines a big request looks like a hang. Runs on the scheduler's thread.
std::function<void(int64_t, int64_t)> prompt_progress_logger(std::string who) {
  const auto start = std::chrono::steady_clock::now();
  auto quarters_logged = std::make_shared<int>(0);
  return [who = std::move(who), start, quarters_logged](int64_t done, int64_t total) {
    const int quarters = static_cast<int>(4 * done / std::max<int64_t>(total, 1));
    if (quarters <= *quarters_logged) return;
    *quarters_logged = quarters;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f s, %.1f tokens/s", seconds, static_cast<double>(done) / std::max(seconds, 1e-9));
    std::cerr << cat(who, " prompt ", done, "/", total, " tokens, ", rate, "\n");  // one write
  };
}

// The methods each route answers, for 405 instead of 404 on a known path.
const std::map<std::string, std::string>& known_paths() {
  static const std::map<std::string, std::string> paths = {{"/", "GET"},
                                                           {"/health", "GET"},
                                                           {"/metrics", "GET"},
                                                           {"/tokenize", "POST"},
                                                           {"/detokenize", "POST"},
                                                           {"/v1/models", "GET"},
                                                           {"/v1/completions", "POST"},
                                                           {"/v1/chat/completions", "POST"}};
  return paths;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  std::string h = lower(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::string metrics_text(const SchedulerStats& s) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += cat("# HELP baichuan_", name, " ", help, "\n# TYPE baichuan_", name, " ", type, "\nbaichuan_", name, " ",
               value, "\n");
  };
  metric("requests_total", "counter", "Generation requests accepted.", s.requests_total);
  metric("requests_active", "gauge", "Requests decoding in a slot now.", s.requests_active);
  metric("queue_depth", "gauge", "Requests waiting for a slot.", s.queue_depth);
  metric("slots", "gauge", "Slots decoding together (--parallel).", s.parallel);
  metric("prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", s.prompt_tokens_total);
  metric("reused_prompt_tokens_total", "counter", "Prompt tokens whose KV cache was reused.",
         s.reused_prompt_tokens_total);
  metric("generated_tokens_total", "counter", "Tokens generated.", s.generated_tokens_total);
  metric("steps_total", "counter", "Batched forward steps run.", s.steps_total);
  metric("tokens_per_second", "gauge", "Generated tokens per second over the last few seconds.", s.tokens_per_second);
  return out;
}

struct HttpServer::Routes {
  explicit Routes(HttpServer& s) : server(s) {}  // not an aggregate: it holds a once_flag
  HttpServer& server;

  std::once_flag json_table_built;
  std::shared_ptr<const JsonTokenTable> json_table_;

  Scheduler& scheduler() { return server.scheduler_; }
  // Built on the first json_object request (a pass over the vocabulary), then shared by all.
  std::shared_ptr<const JsonTokenTable> json_table() {
    std::call_once(json_table_built, [this] { json_table_ = std::make_shared<JsonTokenTable>(tokenizer()); });
    return json_table_;
  }
  const Tokenizer& tokenizer() { return server.scheduler_.model().tokenizer(); }

  bool needs_key(const std::string& path) const {
    return path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize" || path == "/metrics";
  }

  void check_key(const httplib::Request& req) {
    const std::string& key = server.options_.api_key;
    if (key.empty() || !needs_key(req.path)) return;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.size() < 7 || lower(auth.substr(0, 7)) != "bearer ")
      throw ApiError(401, "missing API key: send the header 'Authorization: Bearer KEY'", {}, "invalid_api_key",
                     "authentication_error");
    if (!same_secret(std::string_view(auth).substr(7), key))
      throw ApiError(401, "incorrect API key", {}, "invalid_api_key", "authentication_error");
  }

  // Turns any failure into an error answer, so that no request can take the server down.
  template <typename F>
  static void answering_errors(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const json::exception& e) {  // e.g. invalid UTF-8 met while building an answer
      send_error(res, ApiError(400, cat("invalid request: ", e.what())));
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(500, "out of memory", {}, {}, "server_error"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, e.what(), {}, {}, "server_error"));
    }
  }

  httplib::Server::Handler guarded(void (Routes::*handler)(const httplib::Request&, httplib::Response&)) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      answering_errors(res, [&] {
        check_key(req);
        (this->*handler)(req, res);
      });
    };
  }

  // POST routes read the body themselves: httplib 0.11.4 enforces its payload limit only on bodies
  // with a Content-Length, not on chunked ones, so the limit is counted here as the bytes arrive.
  using BodyHandler = void (Routes::*)(const std::string& body, httplib::Response&);
  httplib::Server::HandlerWithContentReader guarded_post(BodyHandler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      size_t body_bytes = 0;
      answering_errors(res, [&] { read_body_and_answer(req, res, reader, handler, body_bytes); });
      if (body_bytes >= kTrimAfterBodyBytes) malloc_trim(0);  // the body, its JSON and tokens are freed by now
    };
  }

  void read_body_and_answer(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                            BodyHandler handler, size_t& body_bytes) {
    const std::string content_type = req.get_header_value("Content-Type");
    if (!is_json(content_type)) {
      res.set_header("Connection", "close");  // the body is never read
      throw ApiError(415,
                     content_type.empty()
                         ? std::string("the request has no Content-Type: send the JSON body with "
                                       "'Content-Type: application/json'")
                         : cat("the Content-Type is '", content_type,
                               "': send the JSON body with 'Content-Type: application/json'"),
                     "Content-Type", "unsupported_media_type");
    }
    const size_t limit = server.options_.max_body_bytes;
    std::string body;
    bool too_large = false;
    const bool read = reader([&](const char* data, size_t n) {
      if (body.size() + n > limit) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (too_large || res.status == 413) {
      res.set_header("Connection", "close");  // the rest of the body is never read
      throw ApiError(413, cat("the request body is larger than the limit of ", limit, " bytes"), {},
                     "payload_too_large");
    }
    if (!read) {
      res.set_header("Connection", "close");
      const ClientConnection* c = ClientConnection::current();
      if (c && c->timed_out())
        throw ApiError(408, cat("the request body did not arrive within ", c->timeouts().body.count(), " ms"), {},
                       "request_timeout");
      throw ApiError(400, "the request body could not be read", {}, "bad_body");
    }
    body_bytes = body.size();
    check_key(req);  // after the body, so that a refused client's bytes never look like a next request
    (this->*handler)(body, res);
  }

  void page(const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(chat_page_html()), "text/html; charset=utf-8");
  }

  void health(const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); }

  void metrics(const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(scheduler().stats()), "text/plain; version=0.0.4");
  }

  json model_json() const {
    return {{"id", server.options_.model_name},
            {"object", "model"},
            {"created", server.started_},
            {"owned_by", "baichuan.cpp"}};
  }

  void models(const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"object", "list"}, {"data", json::array({model_json()})}});
  }

  void model(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (id != server.options_.model_name)
      throw ApiError(404,
                     cat("the model '", id, "' does not exist; this server has '", server.options_.model_name, "'"),
                     "model", "model_not_found");
    send_json(res, 200, model_json());
  }

  void tokenize(const std::string& body, httplib::Response& res) {
    std::string text = parse_tokenize_request(parse_json_body(body));
    send_json(res, 200, {{"tokens", tokenizer().encode(text)}});
  }

  void detokenize(const std::string& body, httplib::Response& res) {
    auto ids = parse_detokenize_request(parse_json_body(body), tokenizer().vocab_size());
    send_json(res, 200, {{"content", tokenizer().decode(ids)}});
  }

  void chat_completions(const std::string& body, httplib::Response& res) {
    generate(body, res, Endpoint::ChatCompletions);
  }
  void completions(const std::string& body, httplib::Response& res) { generate(body, res, Endpoint::Completions); }

  void generate(const std::string& body, httplib::Response& res, Endpoint endpoint) {
    CompletionRequest request =
        parse_completion_request(parse_json_body(body), endpoint, scheduler().model().generation());
    if (!request.seeded) request.sampling.seed = random_seed();
    PlannedGeneration plan = plan_generation(request, tokenizer(), server.options_.chat,
                                             server.options_.default_max_tokens, scheduler().options().context);
    const auto prompt_tokens = static_cast<int64_t>(plan.prompt.size());
    const int32_t first_prompt_id = plan.prompt.front();
    record_usage(prompt_tokens, -1);
    if (request.json_object) plan.options.json_object = json_table();
    if (server.options_.request_log && prompt_tokens >= kLogPromptProgressTokens) {
      const ClientConnection* client = ClientConnection::current();
      plan.options.on_prompt_progress = prompt_progress_logger(
          cat(client ? client->client() : "-", endpoint == Endpoint::ChatCompletions ? " POST /v1/chat/completions"
                                                                                     : " POST /v1/completions"));
    }

    auto channel = std::make_shared<AnswerChannel>();
    if (request.stream && request.top_logprobs >= 0) plan.options.on_logprobs = AnswerChannel::logprobs_hook(channel);
    uint64_t id = 0;
    try {
      id = scheduler().submit(std::move(plan.prompt), std::move(plan.options), AnswerChannel::events(channel));
    } catch (const QueueFull& e) {
      throw ApiError(503, cat("the server is busy: ", e.what()), {}, "server_busy", "server_error");
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
    if (!server.track(id)) {
      scheduler().cancel(id);
      throw ApiError(503, "the server is shutting down", {}, "server_shutting_down", "server_error");
    }
    AnswerState answer;
    answer.endpoint = endpoint;
    answer.meta = new_response_meta(endpoint, server.options_.model_name);
    answer.include_usage = request.include_usage;
    answer.prompt_tokens = prompt_tokens;
    answer.role_sent = endpoint != Endpoint::ChatCompletions;
    if (request.top_logprobs >= 0) answer.logprobs.emplace(endpoint, tokenizer());
    answer.echo_pending = request.echo;
    answer.echo = std::move(plan.echo);
    answer.first_prompt_id = first_prompt_id;
    if (request.stream)
      stream(res, std::move(answer), id, channel);
    else
      answer_whole(res, answer, id, channel);
  }

  // Waits for the whole answer. A client that leaves meanwhile cancels the generation.
  void answer_whole(httplib::Response& res, AnswerState& answer, uint64_t id,
                    const std::shared_ptr<AnswerChannel>& channel) {
    const std::optional<GenerateResult> result = wait_for_whole_answer(*channel, ClientConnection::current());
    if (!result) {
      channel->abandoned = true;
      scheduler().cancel(id);
      server.untrack(id);
      res.set_header("Connection", "close");
      throw ApiError(499, "the client closed the connection before the answer", {}, "client_closed");
    }
    server.untrack(id);
    record_usage(answer.prompt_tokens, static_cast<int64_t>(result->tokens.size()));
    send_json(res, 200, whole_answer_json(answer, *result));
  }

  // Server-sent events: httplib calls the provider until it calls sink.done() or returns false.
  void stream(httplib::Response& res, AnswerState answer, uint64_t id, const std::shared_ptr<AnswerChannel>& channel) {
    auto state = std::make_shared<AnswerState>(std::move(answer));
    Scheduler* sched = &scheduler();
    std::function<void()> abandon = [sched, id, channel] {
      channel->abandoned = true;
      sched->cancel(id);
    };
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [state, channel, abandon](size_t, httplib::DataSink& sink) {
          try {
            return provide_stream_chunk(*state, *channel, abandon, sink);
          } catch (const std::exception&) {  // e.g. out of memory: end this stream, keep the server
            abandon();
            return false;
          }
        },
        [this, id, channel, abandon](bool) {
          // The response is gone (finished, client closed, or server stopping): never leave a
          // generation running for nobody.
          bool done;
          {
            std::lock_guard lock(channel->mutex);
            done = channel->done;
          }
          if (!done) abandon();
          server.untrack(id);
        });
  }

  // 404/405/413 and any other error httplib answers by itself get OpenAI's error shape.
  httplib::Server::HandlerResponse error_page(const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
    int status = res.status;
    std::string message, code;
    const ClientConnection* client = ClientConnection::current();
    if (status != 404) res.set_header("Connection", "close");  // what follows a bad request is not a request
    if (status == 400 && client && client->timed_out_in_headers()) {
      status = res.status = 408;
      message = cat("the request headers did not arrive within ", client->timeouts().header.count(), " ms");
      code = "request_timeout";
    } else if (status == 404) {
      auto it = known_paths().find(req.path);
      if (it != known_paths().end()) {
        status = 405;
        res.set_header("Allow", it->second);
        message = cat("method ", req.method, " is not allowed on ", req.path, "; use ", it->second);
        code = "method_not_allowed";
      } else {
        message = cat("no such endpoint: ", req.method, " ", req.path);
        code = "not_found";
      }
    } else if (status == 413) {
      message = cat("the request body is larger than the limit of ", server.options_.max_body_bytes, " bytes");
      code = "payload_too_large";
    } else {
      message = cat("the request could not be handled (HTTP ", status, ")");
    }
    send_json(res, status, error_body(message, status >= 500 ? "server_error" : "invalid_request_error", {}, code));
    return httplib::Server::HandlerResponse::Handled;
  }
};

HttpServer::HttpServer(Scheduler& scheduler, ServerOptions options)
    : scheduler_(scheduler), options_(std::move(options)), started_(static_cast<int64_t>(std::time(nullptr))) {
  options_.chat.special_tokens_in_messages = options_.allow_special_in_messages;
  http_ = std::make_unique<HttpListener>(options_.connections, options_.request_log);
  routes_ = std::make_unique<Routes>(*this);
  Routes* routes = routes_.get();
  http_->set_payload_max_length(options_.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half the connections: keep only SO_REUSEADDR (restart without waiting out TIME_WAIT).
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http_->Get("/", routes->guarded(&Routes::page));
  http_->Get("/health", routes->guarded(&Routes::health));
  http_->Get("/metrics", routes->guarded(&Routes::metrics));
  http_->Get("/v1/models", routes->guarded(&Routes::models));
  http_->Get("/v1/models/(.+)", routes->guarded(&Routes::model));
  http_->Post("/tokenize", routes->guarded_post(&Routes::tokenize));
  http_->Post("/detokenize", routes->guarded_post(&Routes::detokenize));
  http_->Post("/v1/completions", routes->guarded_post(&Routes::completions));
  http_->Post("/v1/chat/completions", routes->guarded_post(&Routes::chat_completions));
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [routes](const httplib::Request& req, httplib::Response& res) { return routes->error_page(req, res); }));
  http_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, what, {}, {}, "server_error"));
  });
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  const int port = http_->bind(options_.host, options_.port);
  if (port < 0)
    fail("cannot listen on ", options_.host, ":", options_.port,
         " (is the address valid and the port free? --port 0 picks a free one)");
  return port;
}

void HttpServer::listen() { http_->run(); }

void HttpServer::stop() {
  std::set<uint64_t> ids;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    ids = in_flight_;
  }
  for (uint64_t id : ids) scheduler_.cancel(id);
  http_->stop();
}

bool HttpServer::track(uint64_t id) {
  std::lock_guard lock(mutex_);
  if (stopping_) return false;
  in_flight_.insert(id);
  return true;
}

void HttpServer::untrack(uint64_t id) {
  std::lock_guard lock(mutex_);
  in_flight_.erase(id);
}

}  // namespace baichuan::server
