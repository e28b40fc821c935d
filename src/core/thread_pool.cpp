#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BAICHUAN_PAUSE() _mm_pause()
#else
#define BAICHUAN_PAUSE() std::this_thread::yield()
#endif

namespace baichuan {

namespace {

// A job's first 3/4 goes in kLongChunksPerThread chunks per thread, the last 1/4 in up to
// kShortChunksPerThread per thread: long chunks cost few claims, and the short ones at the end let
// the threads finish within 1/32 of a thread's share of each other. Decoding waits at ~160 job ends
// per token (7B); with 4 equal chunks per thread, perf of a 2-thread tg64 put the pool's two spin
// loops at 8.6% of the samples against 56% in the matrix tiles.
constexpr int64_t kLongChunksPerThread = 2;
constexpr int64_t kShortChunksPerThread = 8;

// The first unit of chunk c of a job of `units` units split as above (c = job_chunks_ gives `units`).
int64_t chunk_start(int64_t c, int64_t units, int n_threads) {
  const int64_t n_long = kLongChunksPerThread * n_threads, tail = units / 4, head = units - tail;
  const int64_t n_short = std::min(tail, kShortChunksPerThread * n_threads);
  if (c <= n_long) return head * c / n_long;
  return head + tail * (c - n_long) / n_short;
}

int64_t chunk_count(int64_t units, int n_threads) {
  return kLongChunksPerThread * n_threads + std::min(units / 4, kShortChunksPerThread * n_threads);
}
constexpr auto kSpin = std::chrono::microseconds(200);  // then sleep

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::default_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

int ThreadPool::threads_for_request(int64_t requested) {
  const int hardware = default_threads();
  if (requested < 0) fail("the thread count must be 0 (all hardware threads) or positive, got ", requested);
  if (requested > hardware)
    fail("the thread count ", requested, " is more than the ", hardware, " hardware threads of this machine (extra "
         "threads would only take turns on the same cores)");
  return requested == 0 ? hardware : static_cast<int>(requested);
}

void ThreadPool::run_chunks(int thread_index) {
  const int64_t units = (job_n_ + job_grain_ - 1) / job_grain_;
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_chunks_) return;
    const int64_t begin = std::min(job_n_, chunk_start(c, units, n_threads_) * job_grain_);
    const int64_t end = std::min(job_n_, chunk_start(c + 1, units, n_threads_) * job_grain_);
    if (begin < end) (*job_)(begin, end, thread_index);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units == 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  job_chunks_ = chunk_count(units, n_threads_);
  next_chunk_.store(0, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  bool sleeping;
  {
    // Under the mutex, so a worker deciding to sleep either sees the new generation or is counted.
    std::lock_guard lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
    sleeping = sleepers_ > 0;
  }
  if (sleeping) wake_.notify_all();
  run_chunks(0);
  // The other threads are finishing their last chunks; yield if one of them is not running.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < (1 << 14))
      BAICHUAN_PAUSE();
    else
      std::this_thread::yield();
  }
  job_ = nullptr;
}

bool ThreadPool::wait_for_job(uint64_t seen) {
  const auto give_up = std::chrono::steady_clock::now() + kSpin;
  while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 64; ++i) BAICHUAN_PAUSE();
    if (std::chrono::steady_clock::now() < give_up) continue;
    std::unique_lock lock(mutex_);
    ++sleepers_;
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(); });
    --sleepers_;
  }
  return !stop_.load();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  while (wait_for_job(seen)) {
    seen = generation_.load(std::memory_order_acquire);
    run_chunks(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace baichuan
