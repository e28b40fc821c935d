#include "kernels/matmul_precision.h"

#include <atomic>
#include <cstdlib>

#include "core/error.h"
#include "kernels/cpu.h"

namespace baichuan::kernels {

namespace {

// BAICHUAN_MATMUL_PRECISION as read once: the precision it asks for and, for an unknown name, why not.
struct PrecisionRequest {
  MatmulPrecision precision = MatmulPrecision::Highest;
  std::string error;
};

const PrecisionRequest& precision_request() {
  static const PrecisionRequest request = [] {
    PrecisionRequest r;
    const char* env = std::getenv("BAICHUAN_MATMUL_PRECISION");
    if (env == nullptr || *env == '\0') return r;
    const std::string name = env;
    if (name == "medium") r.precision = MatmulPrecision::Medium;
    else if (name != "highest") r.error = "BAICHUAN_MATMUL_PRECISION=" + name + ": unknown precision (use highest or medium)";
    return r;
  }();
  return request;
}

std::atomic<MatmulPrecision>& precision_slot() {
  static std::atomic<MatmulPrecision> precision{precision_request().precision};
  return precision;
}

}  // namespace

MatmulPrecision matmul_precision() { return precision_slot().load(std::memory_order_relaxed); }

void check_matmul_precision_request() {
  if (!precision_request().error.empty()) fail(precision_request().error);
}

void set_matmul_precision(MatmulPrecision precision) { precision_slot().store(precision); }

std::string matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::Medium ? "medium" : "highest";
}

bool bf16_products() {
  return matmul_precision() == MatmulPrecision::Medium && active_backend() == Backend::Avx512 &&
         cpu_features().avx512bf16;
}

}  // namespace baichuan::kernels
