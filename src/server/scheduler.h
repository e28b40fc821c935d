// Continuous batching: up to `parallel` generations decode together, one batched forward pass per
// step (the weights are read once for all of them), each in its own slot with its own KV cache. A
// finished or cancelled generation frees its slot at once and a waiting request takes it at the next
// step. A request goes to the free slot whose cache shares the longest prefix with its prompt, so a
// conversation that continues reuses the keys and values it already computed. The scheduler's
// thread is one caller of the shared, read-only Model: it owns its ModelContext, and the pool is
// its alone while it runs (a ThreadPool runs one job at a time).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "generate/decoding.h"
#include "model/model.h"

namespace baichuan::server {

struct SchedulerOptions {
  int parallel = 4;          // slots decoding together
  int64_t context = 4096;    // KV cache positions per slot: prompt + answer
  int max_queue = 16;        // requests waiting for a slot before submit() refuses
  int64_t prompt_chunk = 256;  // prompt tokens per slot per step, so a long prompt does not stall the others
};

// Thrown by submit() when max_queue requests are already waiting.
struct QueueFull : Error {
  using Error::Error;
};

// What the owner of a request hears. Both run on the scheduler's thread: they must return quickly.
struct RequestEvents {
  TokenCallback on_token;  // (id, text) per token, (-1, held-back text) at the end; false cancels
  std::function<void(const GenerateResult&)> on_done;  // exactly once; FinishReason::Error with
                                                       // the message in `text` if the step failed
};

struct SchedulerStats {
  int64_t requests_total = 0, requests_active = 0, queue_depth = 0;
  int64_t prompt_tokens_total = 0, reused_prompt_tokens_total = 0, generated_tokens_total = 0;
  int64_t steps_total = 0;
  double tokens_per_second = 0;  // generated tokens over the last few seconds of work
  int parallel = 0;
};

class Scheduler {
 public:
  Scheduler(const Model& model, ThreadPool& pool, SchedulerOptions options);
  ~Scheduler();  // stops the loop; unfinished requests end with "cancelled"
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation and returns its id. Throws Error for a prompt that is empty, longer than
  // the context or has ids outside the vocabulary, or invalid options; QueueFull when the queue is
  // full. The events may fire before submit() returns.
  uint64_t submit(std::vector<int32_t> prompt, GenerateOptions options, RequestEvents events);
  // Ends a queued or running request before its next step ("cancelled"); unknown ids are ignored.
  void cancel(uint64_t id);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }
  const Model& model() const { return model_; }

 private:
  struct Request {
    uint64_t id;
    std::vector<int32_t> prompt;
    GenerateOptions options;
    RequestEvents events;
    std::atomic<bool> cancelled{false};
  };
  struct Slot {
    explicit Slot(KvCache cache) : sequence(std::move(cache)) {}
    CachedSequence sequence;
    std::shared_ptr<Request> request;  // null when free
    std::unique_ptr<Decoding> decoding;
    uint64_t last_used = 0;
  };

  void run();
  // Moves waiting requests into free slots (under the lock); returns false when stopping.
  bool admit_waiting(std::unique_lock<std::mutex>& lock);
  Slot* best_free_slot(const std::vector<int32_t>& prompt);
  void step();
  void finish(Slot& slot);
  void record_tokens(int64_t generated);

  const Model& model_;
  ThreadPool& pool_;
  ModelContext context_;  // used by the scheduler's thread only
  SchedulerOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Request>> waiting_;
  std::vector<std::shared_ptr<Request>> running_;  // for cancel(): the requests in slots
  uint64_t next_id_ = 1, admissions_ = 0;
  bool stopping_ = false;
  SchedulerStats stats_;
  std::deque<std::pair<double, int64_t>> recent_;  // (time, tokens) of recent steps, for tokens/s

  std::thread thread_;  // last: starts after everything above is built
};

}  // namespace baichuan::server
