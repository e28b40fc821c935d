// The Model class of the Python package on the C++ side: a loaded model shared read-only by the
// calls of several Python threads, each call computing in a session of its own.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "generate/decoding.h"
#include "model/model.h"

namespace baichuan::python {

namespace py = pybind11;

// One caller's share of a Model: forward scratch, threads, and a KV cache with the ids it holds. A
// call (generate, chat, logits; a stream for its whole life) has a session to itself, so calls from
// several Python threads compute at the same time on the one read-only Model. A ThreadPool runs one
// job at a time, hence one pool per session.
struct Session {
  Session(const Model& model, int64_t context, DType kv_type, int threads)
      : pool(threads), sequence(KvCache(model.config(), context, kv_type)) {}
  ModelContext context;
  ThreadPool pool;
  CachedSequence sequence;
  uint64_t epoch = 0;  // the handle's epoch its cache belongs to (reset() and kv_type changes bump it)
};

class ModelHandle;

// A session taken from a handle; gives it back when destroyed.
class SessionLease {
 public:
  SessionLease(ModelHandle& handle, std::unique_ptr<Session> session) : handle_(&handle), session_(std::move(session)) {}
  SessionLease(SessionLease&&) = default;
  SessionLease& operator=(SessionLease&&) = delete;
  ~SessionLease();
  Session& operator*() const { return *session_; }
  Session* operator->() const { return session_.get(); }

 private:
  ModelHandle* handle_;
  std::unique_ptr<Session> session_;
};

// A loaded model and the sessions its calls have used. Idle sessions are kept for reuse: a call
// takes the one whose cache shares the longest prefix with its prompt, so the next turn of a
// conversation computes only its new tokens. The mutex guards that list and a few fields, never a
// computation, and nothing waits for the GIL while holding it.
class ModelHandle {
 public:
  ModelHandle(const std::string& path, std::optional<int> threads, std::optional<int64_t> context,
              const std::string& kv_type, std::optional<std::string> config_path,
              std::optional<std::string> tokenizer_path, std::optional<std::string> position,
              py::handle lora);

  const Model& model() const { return *model_; }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& loras() const { return loras_; }
  int64_t context() const { return context_; }
  int threads() const { return threads_; }
  py::object last_result();
  void set_last_result(const GenerateResult& r);
  std::string kv_type();
  void set_kv_type(const std::string& name);
  void reset();
  // The idle session whose cache shares the longest prefix with `prompt`, or a new one.
  SessionLease take_session(std::span<const int32_t> prompt);
  void give_back(std::unique_ptr<Session> session);
  std::vector<int32_t> ids_of(py::handle prompt) const;
  std::vector<int32_t> chat_ids(py::handle messages, const GenerateOptions& options) const;
  // Generation keywords, transformers-style: unset or None ones take the model's generation_config.
  GenerateOptions options(const py::kwargs& kwargs) const;
  GenerateResult run(const std::vector<int32_t>& prompt, const GenerateOptions& options);
  std::vector<float> logits(const std::vector<int32_t>& ids);

 private:
  std::unique_ptr<Session> new_session(DType kv_type) const;
  void forget(Session& s) const;

  std::unique_ptr<const Model> model_;
  std::vector<std::string> loras_;
  std::string path_;
  int64_t context_ = 0;
  int threads_ = 1;
  mutable std::mutex mutex_;  // guards what follows
  DType kv_type_ = DType::F16;
  uint64_t epoch_ = 0;
  std::vector<std::unique_ptr<Session>> idle_;
  std::optional<GenerateResult> last_;
};

}  // namespace baichuan::python
