// kernels::matmul: a 4096 x 4096 weight matrix (one Baichuan2-7B attention projection) times 1 token
// (decoding: bound by reading the weights) and 32 tokens (prompt processing: bound by arithmetic).
// bytes/s counts the weight bytes read once per product; FLOP/s counts 2 * rows * cols * tokens.
#include <cstring>
#include <map>
#include <mutex>

#include "bench_util.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "quant/quantize.h"

namespace baichuan::bench {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;

// The weights of each type, made once (from the same random floats) and kept for every run.
const std::vector<std::byte>& weights(DType dtype) {
  static std::mutex mutex;
  static std::map<DType, std::vector<std::byte>> cache;
  std::lock_guard lock(mutex);
  auto it = cache.find(dtype);
  if (it != cache.end()) return it->second;
  std::vector<float> f = random_floats(static_cast<size_t>(kRows * kCols), 1, 0.02f);
  std::vector<std::byte> bytes(bytes_for(dtype, kRows * kCols, "benchmark weights"));
  if (dtype == DType::F32) {
    std::memcpy(bytes.data(), f.data(), bytes.size());
  } else if (dtype == DType::F16 || dtype == DType::BF16) {
    auto* h = reinterpret_cast<uint16_t*>(bytes.data());
    for (size_t i = 0; i < f.size(); ++i) h[i] = dtype == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
  } else {
    size_t row_bytes = bytes.size() / kRows;
    for (int64_t r = 0; r < kRows; ++r)
      quant::quantize_row(dtype, f.data() + r * kCols, bytes.data() + static_cast<size_t>(r) * row_bytes, kCols);
  }
  return cache.emplace(dtype, std::move(bytes)).first->second;
}

// Arguments: tokens, threads.
void BM_matmul(benchmark::State& state, DType dtype, kernels::Backend backend) {
  BackendScope scope(state, backend);
  if (!scope.ok()) return;
  const int64_t tokens = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  const auto& w_bytes = weights(dtype);
  kernels::WeightMatrix w;
  w.dtype = dtype;
  w.data = w_bytes.data();
  w.rows = kRows;
  w.cols = kCols;
  w.row_bytes = w_bytes.size() / kRows;
  std::vector<float> x = random_floats(static_cast<size_t>(tokens * kCols), 2);
  std::vector<float> y(static_cast<size_t>(tokens * kRows));
  for (auto _ : state) {
    kernels::matmul(w, x.data(), tokens, y.data(), kRows, pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w_bytes.size()));
  set_flops(state, 2.0 * kRows * kCols * static_cast<double>(tokens));
}

void matmul_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"tokens", "threads"})->Args({1, 1})->Args({1, 2})->Args({32, 1})->Args({32, 2});
  b->UseRealTime()->MinTime(min_time())->Unit(benchmark::kMillisecond);
}

// Quantized weights go down whatever path matmul takes for their type (dequantized rows, or dot
// products with 8-bit quantized activations where a kernel exists).
void quantized_matmul_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"tokens", "threads"})->Args({1, 1})->Args({1, 2})->Args({32, 1});
  b->UseRealTime()->MinTime(min_time())->Unit(benchmark::kMillisecond);
}

using kernels::Backend;
BENCHMARK_CAPTURE(BM_matmul, f32_scalar, DType::F32, Backend::Scalar)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, f32_avx2, DType::F32, Backend::Avx2)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, f32_avx512, DType::F32, Backend::Avx512)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, f16_scalar, DType::F16, Backend::Scalar)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, f16_avx2, DType::F16, Backend::Avx2)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, f16_avx512, DType::F16, Backend::Avx512)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, bf16_scalar, DType::BF16, Backend::Scalar)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, bf16_avx2, DType::BF16, Backend::Avx2)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, bf16_avx512, DType::BF16, Backend::Avx512)->Apply(matmul_args);
BENCHMARK_CAPTURE(BM_matmul, q8_0_avx2, DType::Q8_0, Backend::Avx2)->Apply(quantized_matmul_args);
BENCHMARK_CAPTURE(BM_matmul, q4_0_avx2, DType::Q4_0, Backend::Avx2)->Apply(quantized_matmul_args);
// NF4 (the 4-bit Chat checkpoints kept in 4 bits): the same bytes per weight as Q4_0 (36 per 64),
// float products with the exact weights (kernels/nf4_dot.h), a kernel per backend.
BENCHMARK_CAPTURE(BM_matmul, nf4_scalar, DType::NF4, Backend::Scalar)->Apply(quantized_matmul_args);
BENCHMARK_CAPTURE(BM_matmul, nf4_avx2, DType::NF4, Backend::Avx2)->Apply(quantized_matmul_args);
BENCHMARK_CAPTURE(BM_matmul, nf4_avx512, DType::NF4, Backend::Avx512)->Apply(quantized_matmul_args);

}  // namespace
}  // namespace baichuan::bench
