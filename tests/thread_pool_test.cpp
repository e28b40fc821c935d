// parallel_for's chunks: every index once, boundaries on the grain, the same chunks on every call
// (a chunk's result must not depend on timing), and the end of a large job in short chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "core/thread_pool.h"

namespace thread_pool_test {

using Chunks = std::vector<std::pair<int64_t, int64_t>>;

Chunks chunks_of_one_call(baichuan::ThreadPool& pool, int64_t n, int64_t grain) {
  Chunks chunks;
  std::mutex mutex;
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
    std::lock_guard lock(mutex);
    chunks.emplace_back(begin, end);
  }, grain);
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

TEST(ThreadPool, ChunksCoverEveryIndexOnceOnTheGrainAndRepeat) {
  for (int threads : {1, 2, 3}) {
    baichuan::ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 513, 4096, 15712}) {
      for (int64_t grain : {1, 8, 100}) {
        const Chunks chunks = chunks_of_one_call(pool, n, grain);
        SCOPED_TRACE(::testing::Message() << threads << " threads, n " << n << ", grain " << grain);
        ASSERT_FALSE(chunks.empty());
        EXPECT_EQ(chunks.front().first, 0);
        EXPECT_EQ(chunks.back().second, n);
        for (size_t i = 0; i < chunks.size(); ++i) {
          EXPECT_LT(chunks[i].first, chunks[i].second);
          EXPECT_EQ(chunks[i].first % grain, 0);
          if (i + 1 < chunks.size()) {
            EXPECT_EQ(chunks[i].second, chunks[i + 1].first);
          }
        }
        for (int again = 0; again < 3; ++again) EXPECT_EQ(chunks_of_one_call(pool, n, grain), chunks);
      }
    }
  }
}

// The 7B head's 15,712 groups of 8 rows over 2 threads: few claims, and the last quarter of the job
// in chunks of at most 1/64 of it, so the first thread to run out of work waits for little.
TEST(ThreadPool, ALargeJobEndsInShortChunks) {
  constexpr int64_t n = 15712;
  baichuan::ThreadPool pool(2);
  const Chunks chunks = chunks_of_one_call(pool, n, 1);
  EXPECT_LE(chunks.size(), 20u);
  int64_t short_ones = 0;
  for (const auto& [begin, end] : chunks)
    if (begin >= n - n / 4) {
      EXPECT_LE(end - begin, n / 64 + 1);
      ++short_ones;
    }
  EXPECT_GE(short_ones, 8);
}

TEST(ThreadPool, EveryThreadIndexIsInRangeAndEveryIndexRunsOnce) {
  baichuan::ThreadPool pool(2);
  std::vector<std::atomic<int>> seen(10000);
  std::atomic<bool> bad_thread{false};
  pool.parallel_for(10000, [&](int64_t begin, int64_t end, int thread) {
    if (thread < 0 || thread >= pool.size()) bad_thread = true;
    for (int64_t i = begin; i < end; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
  });
  EXPECT_FALSE(bad_thread);
  for (auto& s : seen) ASSERT_EQ(s.load(), 1);
}

}  // namespace thread_pool_test
