#include "kernels/cpu.h"

#include <atomic>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.h"
#include "kernels/matmul_precision.h"

namespace baichuan::kernels {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    // CPUID directly: clang's __builtin_cpu_supports does not know "f16c".
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
      bool osxsave = c & (1u << 27);
      bool ymm_enabled = false, zmm_enabled = false;
      if (osxsave) {
        unsigned lo, hi;
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        ymm_enabled = (lo & 6u) == 6u;         // the OS saves XMM and YMM state
        zmm_enabled = (lo & 0xE6u) == 0xE6u;   // ... and the opmask and all 32 ZMM registers
      }
      f.fma = ymm_enabled && (c & (1u << 12));
      f.f16c = ymm_enabled && (c & (1u << 29));
      if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = ymm_enabled && (b & (1u << 5));
        f.avx512f = zmm_enabled && (b & (1u << 16));
        f.avx512dq = zmm_enabled && (b & (1u << 17));
        f.avx512bw = zmm_enabled && (b & (1u << 30));
        f.avx512vl = zmm_enabled && (b & (1u << 31));
        f.avx512vnni = zmm_enabled && (c & (1u << 11));
        const unsigned max_subleaf = a;
        if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = zmm_enabled && (a & (1u << 5));
      }
    }
#endif
    return f;
  }();
  return features;
}

bool backend_supported(Backend backend) {
  const auto& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (backend) {
    case Backend::Scalar: return true;
    case Backend::Avx2: return avx2;
    case Backend::Avx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
  }
  return false;
}

Backend best_backend() {
  if (backend_supported(Backend::Avx512)) return Backend::Avx512;
  return backend_supported(Backend::Avx2) ? Backend::Avx2 : Backend::Scalar;
}

namespace {

const char* missing_features(Backend backend) {
  return backend == Backend::Avx512 ? "AVX-512 F/BW/VL/DQ/VNNI (with AVX2/FMA/F16C)" : "AVX2/FMA/F16C";
}

// BAICHUAN_CPU as read once: the backend it asks for and, when it cannot be honoured, why.
struct BackendRequest {
  Backend backend = Backend::Scalar;
  std::string error;
};

const BackendRequest& backend_request() {
  static const BackendRequest request = [] {
    BackendRequest r{best_backend(), {}};
    const char* env = std::getenv("BAICHUAN_CPU");
    if (env == nullptr || *env == '\0') return r;
    const std::string name = env;
    Backend wanted;
    if (name == "scalar") wanted = Backend::Scalar;
    else if (name == "avx2") wanted = Backend::Avx2;
    else if (name == "avx512") wanted = Backend::Avx512;
    else {
      r.error = "BAICHUAN_CPU=" + name + ": unknown kernel path (use scalar, avx2 or avx512)";
      return r;
    }
    if (!backend_supported(wanted)) {
      r.error = "BAICHUAN_CPU=" + name + ": this CPU lacks " + missing_features(wanted) + "; it can run up to " +
                backend_name(best_backend());
      return r;
    }
    r.backend = wanted;
    return r;
  }();
  return request;
}

std::atomic<Backend>& backend_slot() {
  static std::atomic<Backend> backend{backend_request().backend};
  return backend;
}

}  // namespace

Backend startup_backend() { return backend_request().backend; }

void check_backend_request() {
  if (!backend_request().error.empty()) fail(backend_request().error);
}

Backend active_backend() { return backend_slot().load(std::memory_order_relaxed); }

void set_backend(Backend backend) {
  if (!backend_supported(backend)) fail("this CPU lacks ", missing_features(backend));
  backend_slot().store(backend);
}

std::string backend_name(Backend backend) {
  switch (backend) {
    case Backend::Scalar: return "scalar";
    case Backend::Avx2: return "avx2";
    case Backend::Avx512: return "avx512";
  }
  return "unknown";
}

std::string describe_cpu() {
  const auto& f = cpu_features();
  std::string flags;
  for (const auto& [seen, name] : {std::pair{f.avx2, "AVX2"}, {f.fma, "FMA"}, {f.f16c, "F16C"}, {f.avx512f, "AVX512F"},
                                   {f.avx512bw, "AVX512BW"}, {f.avx512vl, "AVX512VL"}, {f.avx512dq, "AVX512DQ"},
                                   {f.avx512vnni, "AVX512_VNNI"}, {f.avx512bf16, "AVX512_BF16"}})
    if (seen) flags += std::string(name) + " ";
  if (flags.empty()) flags = "no AVX2/AVX-512 flags ";
  const Backend active = active_backend(), best = best_backend();
  std::string path = "-> " + backend_name(active) + " kernels";
  // Say why this path: forced lower, or the best these flags allow (and what the next path would need).
  if (active != best) path += " (forced; these flags allow " + backend_name(best) + ")";
  else if (best == Backend::Avx512) path += " (the best path)";
  else if (best == Backend::Avx2) path += " (the best path; avx512 needs AVX-512 F/BW/VL/DQ/VNNI)";
  else path += " (the best path; avx2 needs AVX2, FMA and F16C)";
  if (matmul_precision() == MatmulPrecision::Medium)
    path += bf16_products() ? "; medium matmul precision: BF16 prompt products in bfloat16 (vdpbf16ps)"
                            : "; medium matmul precision asked, but this path has no vdpbf16ps: float32 products";
  return flags + path;
}

}  // namespace baichuan::kernels
