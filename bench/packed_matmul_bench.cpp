// Packed (interleaved by 8) Q4_0 / Q8_0 / Q4_K / Q6_K products against a plain read of the same
// bytes, for a matrix that fits in L2/L3 (4096 x 4096) and one that does not (32768 x 4096, like the
// head): decoding should run at the read's speed; prompts (32 tokens) are bound by integer
// arithmetic. BM_file_matmul runs the same matrix in the file layout (row by row dot products).
#include <map>
#include <memory>
#include <mutex>

#include "bench_util.h"
#include "read_stream.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"
#include "quant/quantize.h"

namespace baichuan::bench {
namespace {

constexpr int64_t kCols = 4096;

struct Packed {
  std::vector<std::byte> file;
  std::unique_ptr<kernels::PackedMatrix> packed;
};

const Packed& packed(DType dtype, int64_t rows) {
  static std::mutex mutex;
  static std::map<std::pair<DType, int64_t>, Packed> cache;
  std::lock_guard lock(mutex);
  auto [it, fresh] = cache.try_emplace({dtype, rows});
  if (!fresh) return it->second;
  const size_t row_bytes = bytes_for(dtype, kCols, "benchmark row");
  it->second.file.resize(row_bytes * static_cast<size_t>(rows));
  std::vector<float> f = random_floats(static_cast<size_t>(kCols), 1);
  for (int64_t r = 0; r < rows; ++r) {
    f[static_cast<size_t>(r % kCols)] += 0.5f;  // rows differ a little
    quant::quantize_row(dtype, f.data(), it->second.file.data() + static_cast<size_t>(r) * row_bytes, kCols);
  }
  kernels::WeightMatrix w{.dtype = dtype, .data = it->second.file.data(), .rows = rows, .cols = kCols, .row_bytes = row_bytes};
  ThreadPool pool(2);
  it->second.packed = std::make_unique<kernels::PackedMatrix>(w, pool);
  return it->second;
}

// Arguments: rows, tokens, threads.
void run_matmul(benchmark::State& state, const kernels::WeightMatrix& w, size_t bytes) {
  const int64_t rows = state.range(0), tokens = state.range(1);
  ThreadPool pool(static_cast<int>(state.range(2)));
  std::vector<float> x = random_floats(static_cast<size_t>(tokens * kCols), 2), y(static_cast<size_t>(tokens * rows));
  kernels::MatmulInput input(x.data(), tokens, kCols);
  for (auto _ : state) {
    input.reset(x.data(), tokens, kCols);
    kernels::matmul(w, input, y.data(), rows, pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
  set_flops(state, 2.0 * static_cast<double>(rows * kCols * tokens));
}

// `backend`: Avx2, or Avx512 (its own 16-row VNNI tiles for Q4_0 / Q8_0, the AVX2 tiles otherwise).
void BM_packed_matmul(benchmark::State& state, DType dtype, kernels::Backend backend) {
  BackendScope scope(state, backend);
  if (!scope.ok()) return;
  const auto& p = packed(dtype, state.range(0));
  run_matmul(state, p.packed->view(), p.packed->bytes());
}

// The same weights in the file layout: what the packing gains.
void BM_file_matmul(benchmark::State& state, DType dtype) {
  BackendScope scope(state, kernels::Backend::Avx2);
  if (!scope.ok()) return;
  const auto& p = packed(dtype, state.range(0));
  kernels::WeightMatrix w = p.packed->view();
  w.layout = kernels::Layout::Rows;
  w.data = p.file.data();
  w.row_bytes = p.file.size() / static_cast<size_t>(w.rows);
  run_matmul(state, w, p.file.size());
}

// The memory roofline at the size of the matrix: the same packed bytes read with the same threads
// (read_stream.h). 72 MiB for 32768 rows is within reach of a large L3 between passes: the DRAM
// figure to hold decoding to is BM_read_stream's (read_bench.cpp).
void BM_read_bytes(benchmark::State& state, DType dtype) {
  ThreadPool pool(static_cast<int>(state.range(2)));
  const auto& p = packed(dtype, state.range(0));
  for (auto _ : state)
    benchmark::DoNotOptimize(read_stream(pool, p.packed->view().data, p.packed->bytes(), kDecodePrefetchBytes));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.packed->bytes()));
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "tokens", "threads"});
  for (int64_t rows : {4096, 32768})
    for (int64_t threads : {1, 2}) b->Args({rows, 1, threads});
  b->Args({4096, 4, 1})->Args({4096, 32, 1})->Args({4096, 32, 2})->Args({32768, 32, 2});
  b->UseRealTime()->MinTime(min_time())->Unit(benchmark::kMillisecond);
}

void read_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "tokens", "threads"});
  for (int64_t rows : {4096, 32768})
    for (int64_t threads : {1, 2}) b->Args({rows, 1, threads});
  b->UseRealTime()->MinTime(min_time())->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_packed_matmul, q4_0_avx2, DType::Q4_0, kernels::Backend::Avx2)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q4_0_avx512, DType::Q4_0, kernels::Backend::Avx512)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q8_0_avx2, DType::Q8_0, kernels::Backend::Avx2)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q8_0_avx512, DType::Q8_0, kernels::Backend::Avx512)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q4_K_avx2, DType::Q4_K, kernels::Backend::Avx2)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q4_K_avx512, DType::Q4_K, kernels::Backend::Avx512)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q6_K_avx2, DType::Q6_K, kernels::Backend::Avx2)->Apply(args);
BENCHMARK_CAPTURE(BM_packed_matmul, q6_K_avx512, DType::Q6_K, kernels::Backend::Avx512)->Apply(args);
BENCHMARK_CAPTURE(BM_file_matmul, q4_K, DType::Q4_K)->Apply(args);
BENCHMARK_CAPTURE(BM_file_matmul, q6_K, DType::Q6_K)->Apply(args);
BENCHMARK_CAPTURE(BM_read_bytes, q4_0, DType::Q4_0)->Apply(read_args);

}  // namespace
}  // namespace baichuan::bench
