// The memory roofline decoding is measured against (read_stream.h), over 1 GiB (far beyond any L3):
// BM_read_stream/<backend>/threads:T/prefetch:BYTES/huge_pages:0|1. The defaults to quote are the
// start-up backend's, prefetch 1024 (the decoding tiles' distance) and huge pages (packed weights live
// in MADV_HUGEPAGE memory); the others show what the prefetch distance and the page size are worth.
#include "read_stream.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/error.h"
#include "core/huge_buffer.h"

namespace baichuan::bench {

namespace read_bench {

constexpr size_t kStep = 256;  // bytes per loop iteration: 4 cache lines
constexpr size_t kLine = 64;

// Baseline x86-64 (SSE2 at most, as the compiler pleases): the reference when no AVX2 runs.
template <bool Prefetch>
uint64_t sum_words_baseline(const std::byte* p, size_t bytes, size_t prefetch) {
  uint64_t acc = 0;
  for (size_t i = 0; i < bytes; i += kStep) {
    if constexpr (Prefetch)
      for (size_t line = 0; line < kStep; line += kLine) __builtin_prefetch(p + i + prefetch + line, 0, 3);
    for (size_t w = 0; w < kStep; w += 8) {
      uint64_t v;
      __builtin_memcpy(&v, p + i + w, 8);
      acc += v;
    }
  }
  return acc;
}

__attribute__((target("avx2"))) inline __m256i load_avx2(const std::byte* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

template <bool Prefetch>
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const std::byte* p, size_t bytes, size_t prefetch) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += kStep) {
    const std::byte* s = p + i;
    if constexpr (Prefetch)
      for (size_t line = 0; line < kStep; line += kLine)
        _mm_prefetch(reinterpret_cast<const char*>(s + prefetch + line), _MM_HINT_T0);
    a0 = _mm256_add_epi64(a0, _mm256_add_epi64(load_avx2(s), load_avx2(s + 32)));
    a1 = _mm256_add_epi64(a1, _mm256_add_epi64(load_avx2(s + 64), load_avx2(s + 96)));
    a2 = _mm256_add_epi64(a2, _mm256_add_epi64(load_avx2(s + 128), load_avx2(s + 160)));
    a3 = _mm256_add_epi64(a3, _mm256_add_epi64(load_avx2(s + 192), load_avx2(s + 224)));
  }
  const __m256i a = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

template <bool Prefetch>
__attribute__((target("avx512f"))) uint64_t sum_words_avx512(const std::byte* p, size_t bytes, size_t prefetch) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += kStep) {
    const std::byte* s = p + i;
    if constexpr (Prefetch)
      for (size_t line = 0; line < kStep; line += kLine)
        _mm_prefetch(reinterpret_cast<const char*>(s + prefetch + line), _MM_HINT_T0);
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(s));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(s + 64));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(s + 128));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(s + 192));
  }
  // Stored and summed by hand: GCC 12's _mm512_reduce_add_epi64 trips -Werror=uninitialized.
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t sum = 0;
  for (uint64_t lane : lanes) sum += lane;
  return sum;
}

uint64_t sum_words(const std::byte* p, size_t bytes, size_t prefetch) {
  switch (kernels::active_backend()) {
    case kernels::Backend::Avx512:
      return prefetch ? sum_words_avx512<true>(p, bytes, prefetch) : sum_words_avx512<false>(p, bytes, 0);
    case kernels::Backend::Avx2:
      return prefetch ? sum_words_avx2<true>(p, bytes, prefetch) : sum_words_avx2<false>(p, bytes, 0);
    default:
      return prefetch ? sum_words_baseline<true>(p, bytes, prefetch) : sum_words_baseline<false>(p, bytes, 0);
  }
}

constexpr size_t kBytes = size_t{1} << 30;
constexpr std::byte kFill{1};

// 1 GiB filled with kFill (so every page is committed), in huge pages or in the small pages a plain
// allocation gets under THP's `madvise` mode. Made on first use and kept: the benchmarks share them.
const std::byte* gib_buffer(bool huge_pages) {
  static std::mutex mutex;
  static std::unique_ptr<HugeBuffer> huge;
  static std::unique_ptr<std::vector<std::byte>> small;
  std::lock_guard lock(mutex);
  if (huge_pages) {
    if (!huge) {
      huge = std::make_unique<HugeBuffer>(kBytes);
      std::fill(huge->data(), huge->data() + kBytes, kFill);
    }
    return huge->data();
  }
  if (!small) small = std::make_unique<std::vector<std::byte>>(kBytes, kFill);
  return small->data();
}

// Arguments: threads, prefetch distance in bytes, huge pages (0/1).
void BM_read_stream(benchmark::State& state, kernels::Backend backend) {
  BackendScope scope(state, backend);
  if (!scope.ok()) return;
  ThreadPool pool(static_cast<int>(state.range(0)));
  const auto prefetch = static_cast<size_t>(state.range(1));
  const std::byte* data = gib_buffer(state.range(2) != 0);
  uint64_t word;
  std::memset(&word, static_cast<int>(kFill), sizeof word);
  const uint64_t expected = word * (kBytes / 8);  // modulo 2^64, as the loop sums
  for (auto _ : state) {
    const uint64_t sum = read_stream(pool, data, kBytes, prefetch);
    if (sum != expected) {
      state.SkipWithError("the read loop's sum is wrong: not every byte was read once");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
  state.SetLabel(kernels::backend_name(backend));
}

void read_stream_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "prefetch", "huge_pages"});
  for (int64_t threads : {1, 2}) {
    for (int64_t prefetch : {0, 512, 1024, 2048, 4096}) b->Args({threads, prefetch, 1});
    b->Args({threads, static_cast<int64_t>(kDecodePrefetchBytes), 0});
  }
  b->UseRealTime()->MinTime(min_time())->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_read_stream, scalar, kernels::Backend::Scalar)->Apply(read_stream_args);
BENCHMARK_CAPTURE(BM_read_stream, avx2, kernels::Backend::Avx2)->Apply(read_stream_args);
BENCHMARK_CAPTURE(BM_read_stream, avx512, kernels::Backend::Avx512)->Apply(read_stream_args);

}  // namespace read_bench

uint64_t read_stream(ThreadPool& pool, const std::byte* data, size_t bytes, size_t prefetch) {
  // Chunks of 4 KiB steps claimed through parallel_for, as a matrix's row blocks are in decoding.
  if (bytes % read_bench::kStep != 0) fail("read_stream: ", bytes, " bytes is not a multiple of ", read_bench::kStep);
  const auto steps = static_cast<int64_t>(bytes / read_bench::kStep);
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()), 0);
  pool.parallel_for(steps, [&](int64_t begin, int64_t end, int thread) {
    sums[static_cast<size_t>(thread)] +=
        read_bench::sum_words(data + static_cast<size_t>(begin) * read_bench::kStep,
                              static_cast<size_t>(end - begin) * read_bench::kStep, prefetch);
  }, 4096 / static_cast<int64_t>(read_bench::kStep));
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  return total;
}

}  // namespace baichuan::bench
