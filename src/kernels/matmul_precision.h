// How exactly products with float weights are computed, chosen once at start-up like the kernel
// path (cpu.h). The names are PyTorch's (torch.set_float32_matmul_precision):
// - highest (the default): float32 activations, one fused multiply-add per term; the logits agree
//   with the official code's float32 ones to 1e-5 of their range.
// - medium (BAICHUAN_MATMUL_PRECISION=medium): the products of prompts (2 or more tokens) with BF16
//   weights take the activations rounded to bfloat16 and run on `vdpbf16ps`, twice the multiply-adds
//   per instruction of float32 FMA, as llama.cpp computes BF16 files and PyTorch computes a bfloat16
//   model. Only where it runs: the avx512 path on a CPU with AVX512_BF16; elsewhere medium changes
//   nothing. Decoding (one token per product) is bound by reading the weights and stays float32.
#pragma once
#include <string>

namespace baichuan::kernels {

enum class MatmulPrecision { Highest, Medium };

// BAICHUAN_MATMUL_PRECISION as read at start-up (highest when unset); until
// check_matmul_precision_request() throws for an unknown name (the CLI calls it first), highest runs.
MatmulPrecision matmul_precision();
void check_matmul_precision_request();
// For tests and benchmarks.
void set_matmul_precision(MatmulPrecision precision);
std::string matmul_precision_name(MatmulPrecision precision);

// True when the products of prompts with BF16 weights run on vdpbf16ps now: medium precision, the
// avx512 path active and AVX512_BF16 present.
bool bf16_products();

}  // namespace baichuan::kernels
