// bitsandbytes 4-bit weights as the official Baichuan2-7B/13B-Chat-4bits releases store them in
// pytorch_model.bin: `<weight>.data` (uint8, two 4-bit codes per byte, the first in the HIGH nibble)
// and `<weight>.quant_state` (block scales quantized again: double quantisation; see
// torch_pickle.h's TorchQuantState and ../shared/reference/b2-7b-tiny-4bits/README.md).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "formats/torch_pickle.h"

namespace baichuan::formats {

// The parts of one 4-bit weight, each a tensor of the archive (types and counts not yet checked).
struct Bnb4bitParts {
  TorchQuantState state;
  Tensor data, absmax, offset, absmax2, code2, code;
};

// Checks the parts against each other (quant_type "nf4", blocksize 64, dequantized dtype float16,
// element types and counts matching the shape) and dequantizes the weight bit-exactly as
// bitsandbytes 0.41.1 dequantize_4bit does:
//   absmax[b] = code2[qabsmax[b]] * absmax2[b / blocksize2] + offset   (float32, multiply then add)
//   w[i] = float16(code[nibble(i)] * absmax[i / 64])                   (float32 multiply, round to even)
// The result is an F16 tensor named `name` of the state's shape, in an owned buffer. Errors name the
// file and the weight.
// (The code table must equal quant::kNf4Values.)
Tensor dequantize_bnb_nf4(const Bnb4bitParts& parts, const std::string& name, const std::string& path);

// The same checks, then the weight kept in 4 bits as an NF4 tensor (quant/blocks.h: the block scales
// decoded once to float32, the codes regrouped per block); its dequantized values equal those of
// dequantize_bnb_nf4 bit for bit. The rows must be whole blocks of 64 (in = 4096, 11008, 5120, 13696
// in the releases).
Tensor bnb_nf4_blocks(const Bnb4bitParts& parts, const std::string& name, const std::string& path);

// How the reader keeps 4-bit weights: in 4 bits (NF4, the default: products in float32 with the
// exact weights, kernels/nf4_dot.h) or dequantized to F16 (BAICHUAN_NF4=f16; the same weights,
// twice the memory). Another value of BAICHUAN_NF4 is an error.
enum class Nf4Path { Native, F16 };
Nf4Path bnb_nf4_path();
// Whether a 4-bit weight of this shape stays NF4: the native path and rows that are whole blocks of
// 64 (every linear of the 7B and 13B releases; a block of the tiny fixture spans two rows).
bool keeps_nf4_blocks(const std::vector<int64_t>& shape);
// bnb_nf4_blocks where keeps_nf4_blocks, dequantize_bnb_nf4 otherwise.
Tensor read_bnb_nf4(const Bnb4bitParts& parts, const std::string& name, const std::string& path);

// What the load line says about a checkpoint's 4-bit weights, "" for a checkpoint without any:
// nf4_matrices is how many of its tensors are NF4; the 4-bit releases are told by config.json's
// quantization_config.load_in_4bit (config_path), for when every 4-bit weight was dequantized.
std::string describe_bnb_nf4_load(int64_t nf4_matrices, const std::string& config_path);

// ---- writing: the release layout, for benchmarks and tests (`baichuan init --format bnb-nf4`) ----

// One tensor of a 4-bit pytorch_model.bin. A float16 Parameter (four_bit false): `produce` fills the
// little-endian halves. A 4-bit weight [out, in]: `produce` fills the packed code bytes (element 2k
// in the high nibble of byte k), `block_codes` the qabsmax byte of each block of 64, and the block
// scales are code2[qabsmax[b]] * absmax2[b / 256] + offset.
struct Bnb4bitTensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  bool four_bit = false;
  // Fills bytes [first, first + n) of the tensor's storage (halves, or packed codes).
  std::function<void(std::byte* out, size_t first, size_t n)> produce;
  std::function<void(std::byte* out, size_t first, size_t n)> block_codes;  // four_bit: qabsmax bytes
  std::vector<float> absmax2;  // four_bit: ceil(nblocks / 256) values
  float offset = 0.0f;         // four_bit
};

// Writes `tensors` as torch.save does for the official 4-bit checkpoints (pickle protocol 2, a dict of
// `<w>.data` + `<w>.quant_state` lists and float16 Parameters; stored zip entries
// `pytorch_model/data.pkl`, `pytorch_model/data/<key>`, `pytorch_model/version`), with `code2` (256
// values) shared by every quant_state. Written atomically.
void write_bnb_nf4_bin(const std::string& path, const std::vector<Bnb4bitTensorToWrite>& tensors,
                       const std::vector<float>& code2);

}  // namespace baichuan::formats
