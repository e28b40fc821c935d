#include "server/scheduler.h"

#include <algorithm>
#include <chrono>

namespace baichuan::server {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr double kRateWindowSeconds = 5.0;  // tokens/s in /metrics: over the last few seconds

}  // namespace

Scheduler::Scheduler(const Model& model, ThreadPool& pool, SchedulerOptions options)
    : model_(model), pool_(pool), options_(options) {
  if (options_.parallel < 1) fail("--parallel must be at least 1, got ", options_.parallel);
  if (options_.context < 1) fail("--ctx must be at least 1, got ", options_.context);
  if (options_.max_queue < 0) fail("--queue must be >= 0, got ", options_.max_queue);
  check_kv_cache_fits(model.config(), options_.context, model.kv_type(), options_.parallel);
  for (int i = 0; i < options_.parallel; ++i) slots_.push_back(std::make_unique<Slot>(model.new_cache(options_.context)));
  stats_.parallel = options_.parallel;
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  GenerateResult cancelled;
  cancelled.finish_reason = FinishReason::Cancelled;
  for (auto& slot : slots_)
    if (slot->request) {
      slot->decoding->cancel();
      if (slot->request->events.on_done) slot->request->events.on_done(slot->decoding->result());
    }
  for (auto& request : waiting_)
    if (request->events.on_done) request->events.on_done(cancelled);
}

uint64_t Scheduler::submit(std::vector<int32_t> prompt, GenerateOptions options, RequestEvents events) {
  // What Decoding would refuse is refused here, on the caller's thread.
  check_generation(prompt, options, options_.context, model_.config().vocab_size);

  auto request = std::make_shared<Request>();
  request->prompt = std::move(prompt);
  request->options = std::move(options);
  request->events = std::move(events);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw QueueFull("the server is shutting down");
    // Free slots take waiting requests at the next step, so they count as room in the queue.
    const size_t free_slots = slots_.size() - running_.size();
    if (waiting_.size() >= static_cast<size_t>(options_.max_queue) + free_slots)
      throw QueueFull(cat("all ", options_.parallel, " slots are busy and ", waiting_.size(),
                          " requests are waiting: try again shortly"));
    request->id = next_id_++;
    waiting_.push_back(request);
    ++stats_.requests_total;
  }
  wake_.notify_all();
  return request->id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard lock(mutex_);
  for (auto& r : running_)
    if (r->id == id) r->cancelled = true;
  for (auto& r : waiting_)
    if (r->id == id) r->cancelled = true;
  wake_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  SchedulerStats s = stats_;
  s.requests_active = static_cast<int64_t>(running_.size());
  s.queue_depth = static_cast<int64_t>(waiting_.size());
  if (!recent_.empty()) {
    const double age = now_seconds() - recent_.front().first;
    int64_t tokens = 0;
    for (const auto& [t, n] : recent_) tokens += n;
    s.tokens_per_second = age <= kRateWindowSeconds ? static_cast<double>(tokens) / std::max(age, 1.0) : 0.0;
  }
  return s;
}

Scheduler::Slot* Scheduler::best_free_slot(const std::vector<int32_t>& prompt) {
  Slot* best = nullptr;
  size_t best_shared = 0;
  for (auto& slot : slots_) {
    if (slot->request) continue;
    size_t shared = slot->sequence.shared_prefix(prompt);
    // Longest shared prefix first; among equals the slot unused longest, so hot caches survive.
    if (!best || shared > best_shared || (shared == best_shared && slot->last_used < best->last_used)) {
      best = slot.get();
      best_shared = shared;
    }
  }
  return best;
}

bool Scheduler::admit_waiting(std::unique_lock<std::mutex>& lock) {
  for (;;) {
    // Requests cancelled while waiting end without taking a slot.
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->cancelled) {
        auto request = *it;
        it = waiting_.erase(it);
        GenerateResult cancelled;
        cancelled.finish_reason = FinishReason::Cancelled;
        lock.unlock();
        if (request->events.on_done) request->events.on_done(cancelled);
        lock.lock();
        it = waiting_.begin();
      } else {
        ++it;
      }
    }
    while (!waiting_.empty() && running_.size() < slots_.size()) {
      auto request = waiting_.front();
      waiting_.pop_front();
      Slot* slot = best_free_slot(request->prompt);
      slot->request = request;
      slot->last_used = ++admissions_;
      running_.push_back(request);
      try {
        slot->decoding = std::make_unique<Decoding>(model_, slot->sequence, request->prompt, request->options,
                                                    options_.prompt_chunk);
      } catch (const Error& e) {  // submit() checked the same things; kept so a slip never kills the loop
        GenerateResult failed;
        failed.finish_reason = FinishReason::Error;
        failed.text = e.what();
        slot->decoding.reset();
        slot->request.reset();
        std::erase(running_, request);
        lock.unlock();
        if (request->events.on_done) request->events.on_done(failed);
        lock.lock();
        continue;
      }
      stats_.prompt_tokens_total += static_cast<int64_t>(request->prompt.size());
      stats_.reused_prompt_tokens_total += slot->decoding->result().reused_prompt_tokens;
    }
    if (stopping_) return false;
    if (!running_.empty()) return true;
    wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
  }
}

void Scheduler::run() {
  std::unique_lock lock(mutex_);
  while (admit_waiting(lock)) {
    lock.unlock();
    step();
    lock.lock();
  }
}

void Scheduler::step() {
  std::vector<SequenceStep> steps;
  std::vector<Slot*> stepping;
  for (auto& slot : slots_) {
    if (!slot->request) continue;
    if (slot->request->cancelled) slot->decoding->cancel();
    if (slot->decoding->done()) {  // cancelled, or max_tokens 0
      finish(*slot);
      continue;
    }
    steps.push_back(slot->decoding->next_step());
    stepping.push_back(slot.get());
  }
  if (steps.empty()) return;

  try {
    model_.forward(context_, steps, pool_);
  } catch (const Error& e) {  // e.g. a cache overflow: end these requests, keep serving the others
    for (Slot* slot : stepping) {
      GenerateResult failed = slot->decoding->result();
      failed.finish_reason = FinishReason::Error;
      failed.text = e.what();
      slot->decoding->cancel();
      auto request = slot->request;
      slot->sequence.ids.clear();
      slot->sequence.cache.clear();
      slot->decoding.reset();
      slot->request.reset();
      {
        std::lock_guard lock(mutex_);
        std::erase(running_, request);
      }
      if (request->events.on_done) request->events.on_done(failed);
    }
    return;
  }

  int64_t generated = 0;
  for (Slot* slot : stepping) {
    const size_t before = slot->decoding->result().tokens.size();
    slot->decoding->accept(slot->request->events.on_token);
    generated += static_cast<int64_t>(slot->decoding->result().tokens.size() - before);
    if (slot->decoding->done()) finish(*slot);
  }
  record_tokens(generated);
}

void Scheduler::finish(Slot& slot) {
  auto request = slot.request;
  GenerateResult result = slot.decoding->result();
  slot.decoding.reset();
  slot.request.reset();
  {
    std::lock_guard lock(mutex_);
    std::erase(running_, request);
  }
  if (request->events.on_done) request->events.on_done(result);
}

void Scheduler::record_tokens(int64_t generated) {
  std::lock_guard lock(mutex_);
  ++stats_.steps_total;
  stats_.generated_tokens_total += generated;
  const double now = now_seconds();
  recent_.emplace_back(now, generated);
  while (!recent_.empty() && now - recent_.front().first > kRateWindowSeconds) recent_.pop_front();
}

}  // namespace baichuan::server
