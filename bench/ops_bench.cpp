// The per-token operations of kernels/ops.h at Baichuan2-7B sizes: rms_norm over the hidden size
// (4096), softmax over a 4096-position attention row, silu_mul over the FFN width (11008).
// bytes/s counts the float32 bytes read; FLOP/s is nominal: rms_norm 4 per element (square, add,
// two multiplies), softmax 5 (max, subtract, exp, add, multiply), silu_mul 5 (negate, exp, add,
// divide, multiply). These kernels have no SIMD variant yet, so they run the same on every backend.
#include "bench_util.h"
#include "core/tensor.h"
#include "kernels/ops.h"

namespace baichuan::bench {
namespace {

void BM_rms_norm(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> x = random_floats(static_cast<size_t>(n), 6), w = random_floats(static_cast<size_t>(n), 7);
  std::vector<float> out(static_cast<size_t>(n));
  Tensor weight;
  weight.name = "norm.weight";
  weight.dtype = DType::F32;
  weight.shape = {n};
  weight.data = reinterpret_cast<const std::byte*>(w.data());
  weight.nbytes = w.size() * sizeof(float);
  for (auto _ : state) {
    kernels::rms_norm(x.data(), weight, 1e-6f, out.data(), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * static_cast<int64_t>(sizeof(float)));
  set_flops(state, 4.0 * static_cast<double>(n));
}

void BM_softmax(benchmark::State& state) {
  const int64_t n = state.range(0);
  // In place, again and again: after the first pass the input is a distribution, which costs the
  // same to normalise (exp takes the same time whatever the value).
  std::vector<float> x = random_floats(static_cast<size_t>(n), 8, 3.0f);
  for (auto _ : state) {
    kernels::softmax_inplace(x.data(), n);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * static_cast<int64_t>(sizeof(float)));
  set_flops(state, 5.0 * static_cast<double>(n));
}

void BM_silu_mul(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> gate = random_floats(static_cast<size_t>(n), 9), up = random_floats(static_cast<size_t>(n), 10);
  std::vector<float> out(static_cast<size_t>(n));
  for (auto _ : state) {
    kernels::silu_mul(gate.data(), up.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * static_cast<int64_t>(sizeof(float)));
  set_flops(state, 5.0 * static_cast<double>(n));
}

BENCHMARK(BM_rms_norm)->Arg(4096)->UseRealTime()->MinTime(min_time());
BENCHMARK(BM_softmax)->Arg(4096)->UseRealTime()->MinTime(min_time());
BENCHMARK(BM_silu_mul)->Arg(11008)->UseRealTime()->MinTime(min_time());

}  // namespace
}  // namespace baichuan::bench
