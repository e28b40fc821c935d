// Helpers shared by the kernel micro-benchmarks: deterministic random inputs, the run time of each
// benchmark, and running a benchmark under a chosen kernel backend.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu.h"

namespace baichuan::bench {

// Seconds each benchmark runs for (Google Benchmark's default of 0.5 s makes the whole set slow on
// a 2-core machine); BAICHUAN_BENCH_MIN_TIME=SECONDS overrides it, since a MinTime set in code takes
// precedence over --benchmark_min_time.
inline double min_time() {
  const char* env = std::getenv("BAICHUAN_BENCH_MIN_TIME");
  double t = env ? std::atof(env) : 0.0;
  return t > 0 ? t : 0.1;
}

// n floats drawn from N(0, scale^2) with a fixed seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Selects `backend` for the benchmark's lifetime and puts back the one chosen at start-up; skips the
// benchmark when the CPU cannot run it. `ok()` is false after a skip.
class BackendScope {
 public:
  BackendScope(benchmark::State& state, kernels::Backend backend) : saved_(kernels::active_backend()) {
    if (!kernels::backend_supported(backend)) {
      state.SkipWithError(backend == kernels::Backend::Avx512 ? "this CPU lacks AVX-512 F/BW/VL/DQ/VNNI"
                                                              : "this CPU lacks AVX2/FMA/F16C");
      ok_ = false;
      return;
    }
    kernels::set_backend(backend);
  }
  ~BackendScope() { kernels::set_backend(saved_); }
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;
  bool ok() const { return ok_; }

 private:
  kernels::Backend saved_;
  bool ok_ = true;
};

// FLOP/s as a rate counter: `flops_per_iteration` times the iterations, divided by the time.
inline void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace baichuan::bench
