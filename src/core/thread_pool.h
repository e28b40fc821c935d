// The thread pool of every computation. parallel_for splits [0, n) into long chunks, then short ones,
// that threads claim one at a time (the caller's thread works too): a thread slowed by another process
// takes fewer chunks, and all finish within a short chunk of each other. Between jobs, workers spin briefly
// before sleeping: decoding issues hundreds of small jobs per token, and waking a sleeping thread
// costs tens of microseconds each time.
//
// A pool runs one parallel_for at a time (its job slot is not shared): threads that compute at the
// same time on one shared Model (the server's scheduler, each Python call) each own a pool. Pools
// share no state, and the kernels' per-thread scratch is thread_local, so pools run side by side.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace baichuan {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Calls fn(begin, end, thread_index) on disjoint chunks covering [0, n); returns when all are done.
  // `grain` rounds chunk boundaries to multiples of it (e.g. a SIMD width or a block of rows).
  // A thread may get several chunks; which thread computes which chunk varies from call to call.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t grain = 1);

  static int default_threads();  // the number of hardware threads
  // The thread count for a user's request (-t, threads=): 0 means all hardware threads; more than the
  // hardware has is refused with an Error, because the workers spin between jobs: extra threads only
  // take turns on the same cores (-t 10000 once drove a machine's load above 900).
  static int threads_for_request(int64_t requested);

 private:
  void worker(int index);
  void run_chunks(int thread_index);
  bool wait_for_job(uint64_t seen);  // false when the pool is stopping

  int n_threads_;
  std::vector<std::thread> workers_;
  // The current job, published by bumping generation_.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1, job_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers that have not finished the current job
  std::atomic<bool> stop_{false};
  // Sleeping workers wait here.
  std::mutex mutex_;
  std::condition_variable wake_;
  int sleepers_ = 0;
};

}  // namespace baichuan
