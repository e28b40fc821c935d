#include "kernels/cpu.h"

#include <atomic>

#include "core/error.h"

namespace baichuan::kernels {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = __builtin_cpu_supports("f16c");
#endif
    return f;
  }();
  return features;
}

namespace {

bool avx2_usable() {
  const auto& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}

std::atomic<Backend>& backend_slot() {
  static std::atomic<Backend> backend{avx2_usable() ? Backend::Avx2 : Backend::Scalar};
  return backend;
}

}  // namespace

Backend active_backend() { return backend_slot().load(std::memory_order_relaxed); }

void set_backend(Backend backend) {
  if (backend == Backend::Avx2 && !avx2_usable()) fail("this CPU lacks AVX2/FMA/F16C");
  backend_slot().store(backend);
}

std::string backend_name(Backend backend) { return backend == Backend::Avx2 ? "avx2" : "scalar"; }

std::string describe_cpu() {
  const auto& f = cpu_features();
  std::string s;
  if (f.avx2) s += "AVX2 ";
  if (f.fma) s += "FMA ";
  if (f.f16c) s += "F16C ";
  if (s.empty()) s = "no SIMD extensions used ";
  return s + "-> " + backend_name(active_backend()) + " kernels";
}

}  // namespace baichuan::kernels
