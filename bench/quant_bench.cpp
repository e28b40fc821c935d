// GGUF block formats: dequantize_row and quantize_row on one 4096-element row (a Baichuan2-7B
// hidden-size weight row). bytes/s counts the quantized bytes read (dequantize) or the float32 bytes
// read (quantize). FLOP/s is nominal: dequantize counts 1 FLOP per element for the scale-only types
// (Q8_0, Q4_0, Q5_0) and 2 for the types with a minimum or sub-block scales (Q4_1, Q5_1, Q4_K, Q5_K,
// Q6_K); quantize counts 3 (find the range, scale, round). quantize_activations (the 8-bit blocks
// every input of an integer matrix product is turned into, kernels/quant_dot.h) on the same row, per
// backend: 32-element blocks (what Q4_0/Q8_0 weights take) and 256-element ones (K-quants).
#include <cstddef>
#include <cstring>

#include "bench_util.h"
#include "core/half.h"
#include "core/tensor.h"
#include "kernels/quant_dot.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace baichuan::bench {
namespace {

constexpr int64_t kElems = 4096;

// A valid row of `dtype`: quantized from random floats where quantize_row can, else random bytes
// with the f16 super-block scales set to small normal numbers (no NaN, infinity or subnormal).
std::vector<std::byte> quantized_row(DType dtype) {
  std::vector<float> f = random_floats(kElems, 3, 0.02f);
  std::vector<std::byte> row(bytes_for(dtype, kElems, "benchmark row"));
  if (quant::can_quantize(dtype)) {
    quant::quantize_row(dtype, f.data(), row.data(), kElems);
    return row;
  }
  std::mt19937 rng(4);
  for (auto& b : row) b = static_cast<std::byte>(rng() & 0xff);
  const size_t block = dtype_info(dtype).block_bytes;
  const uint16_t d = f32_to_f16(1e-3f), dmin = f32_to_f16(5e-4f);
  for (size_t off = 0; off < row.size(); off += block) {
    if (dtype == DType::Q6_K) {
      std::memcpy(row.data() + off + offsetof(quant::block_q6_K, d), &d, 2);
    } else {  // Q4_K, Q5_K: d and dmin lead the block
      std::memcpy(row.data() + off, &d, 2);
      std::memcpy(row.data() + off + 2, &dmin, 2);
    }
  }
  return row;
}

double dequantize_flops_per_elem(DType dtype) {
  return dtype == DType::Q8_0 || dtype == DType::Q4_0 || dtype == DType::Q5_0 ? 1.0 : 2.0;
}

void BM_dequantize_row(benchmark::State& state, DType dtype) {
  std::vector<std::byte> row = quantized_row(dtype);
  std::vector<float> out(kElems);
  for (auto _ : state) {
    quant::dequantize_row(dtype, row.data(), out.data(), kElems);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kElems);
  set_flops(state, dequantize_flops_per_elem(dtype) * kElems);
}

void BM_quantize_row(benchmark::State& state, DType dtype) {
  std::vector<float> f = random_floats(kElems, 5, 0.02f);
  std::vector<std::byte> row(bytes_for(dtype, kElems, "benchmark row"));
  for (auto _ : state) {
    quant::quantize_row(dtype, f.data(), row.data(), kElems);
    benchmark::DoNotOptimize(row.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kElems * static_cast<int64_t>(sizeof(float)));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kElems);
  set_flops(state, 3.0 * kElems);
}

void BM_quantize_activations(benchmark::State& state, DType weight_type, kernels::Backend backend) {
  BackendScope scope(state, backend);
  if (!scope.ok()) return;
  std::vector<float> x = random_floats(kElems, 6);
  std::vector<float> out(kernels::activation_bytes(weight_type, kElems) / sizeof(float));
  for (auto _ : state) {
    kernels::quantize_activations(weight_type, x.data(), kElems, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kElems * static_cast<int64_t>(sizeof(float)));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kElems);
}

void row_args(benchmark::internal::Benchmark* b) { b->UseRealTime()->MinTime(min_time()); }

BENCHMARK_CAPTURE(BM_dequantize_row, q8_0, DType::Q8_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q4_0, DType::Q4_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q4_1, DType::Q4_1)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q5_0, DType::Q5_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q5_1, DType::Q5_1)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q4_k, DType::Q4_K)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q5_k, DType::Q5_K)->Apply(row_args);
BENCHMARK_CAPTURE(BM_dequantize_row, q6_k, DType::Q6_K)->Apply(row_args);

BENCHMARK_CAPTURE(BM_quantize_row, q8_0, DType::Q8_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_row, q4_0, DType::Q4_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_row, q4_1, DType::Q4_1)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_row, q5_0, DType::Q5_0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_row, q5_1, DType::Q5_1)->Apply(row_args);

using kernels::Backend;
BENCHMARK_CAPTURE(BM_quantize_activations, blocks32_scalar, DType::Q4_0, Backend::Scalar)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_activations, blocks32_avx2, DType::Q4_0, Backend::Avx2)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_activations, blocks32_avx512, DType::Q4_0, Backend::Avx512)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_activations, blocks256_scalar, DType::Q4_K, Backend::Scalar)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_activations, blocks256_avx2, DType::Q4_K, Backend::Avx2)->Apply(row_args);
BENCHMARK_CAPTURE(BM_quantize_activations, blocks256_avx512, DType::Q4_K, Backend::Avx512)->Apply(row_args);

}  // namespace
}  // namespace baichuan::bench
