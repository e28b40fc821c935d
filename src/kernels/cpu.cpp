#include "kernels/cpu.h"

#include <atomic>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.h"

namespace baichuan::kernels {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    // CPUID directly: clang's __builtin_cpu_supports does not know "f16c".
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
      bool osxsave = c & (1u << 27);
      bool ymm_enabled = false;
      if (osxsave) {
        unsigned lo, hi;
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        ymm_enabled = (lo & 6u) == 6u;  // the OS saves XMM and YMM state
      }
      f.fma = ymm_enabled && (c & (1u << 12));
      f.f16c = ymm_enabled && (c & (1u << 29));
      if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) f.avx2 = ymm_enabled && (b & (1u << 5));
    }
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
