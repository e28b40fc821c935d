// CPU features and the kernel backend chosen from them once at start-up.
#pragma once
#include <string>

namespace baichuan::kernels {

// Ordered: each backend can run the kernels of those below it. Avx512 has its own kernels only
// where they were written; everything else runs the AVX2 kernels.
enum class Backend { Scalar, Avx2, Avx512 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false, avx512bf16 = false;
};

const CpuFeatures& cpu_features();
// The best backend this CPU can run (Avx512 needs F, BW, VL, DQ and VNNI besides AVX2/FMA/F16C).
Backend best_backend();
bool backend_supported(Backend backend);
// The backend chosen at start-up: best_backend(), or the one the environment variable BAICHUAN_CPU
// names (scalar, avx2, avx512) to force a lower path. A name that is unknown or that this CPU cannot
// run is refused: check_backend_request() throws baichuan::Error saying so (the CLI calls it first)
// and, until then, the best backend runs.
Backend startup_backend();
void check_backend_request();
Backend active_backend();
// True when AVX2 kernels run: the Avx2 backend and, where it has no kernel of its own, Avx512.
inline bool avx2_kernels() { return active_backend() >= Backend::Avx2; }
// Forces a backend (tests compare SIMD against scalar); one the CPU cannot run is refused.
void set_backend(Backend backend);
std::string backend_name(Backend backend);
// The flags seen and the path chosen, e.g. "AVX2 FMA F16C -> avx2 kernels (the best path; avx512 needs ...)".
std::string describe_cpu();

}  // namespace baichuan::kernels
