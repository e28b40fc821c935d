// CPU features and the kernel backend chosen from them once at start-up.
#pragma once
#include <string>

namespace baichuan::kernels {

enum class Backend { Scalar, Avx2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
};

const CpuFeatures& cpu_features();
Backend active_backend();
// Forces a backend (tests compare SIMD against scalar); Avx2 is refused on a CPU without it.
void set_backend(Backend backend);
std::string backend_name(Backend backend);
std::string describe_cpu();  // e.g. "AVX2 FMA F16C -> avx2 kernels"

}  // namespace baichuan::kernels
