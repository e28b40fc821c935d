// bitsandbytes 4-bit weights as the official Baichuan2-7B/13B-Chat-4bits releases store them in
// pytorch_model.bin: `<weight>.data` (uint8, two 4-bit codes per byte, the first in the HIGH nibble)
// and `<weight>.quant_state` (block scales quantized again: double quantisation; see
// torch_pickle.h's TorchQuantState and ../shared/reference/b2-7b-tiny-4bits/README.md).
#pragma once
#include <string>

#include "core/tensor.h"
#include "formats/torch_pickle.h"

namespace baichuan::formats {

// The parts of one 4-bit weight, each a tensor of the archive (types and counts not yet checked).
struct Bnb4bitParts {
  TorchQuantState state;
  Tensor data, absmax, offset, absmax2, code2, code;
};

// The NF4 code table of bitsandbytes (also stored as quant_state[6]; checked equal).
extern const float kNf4Table[16];

// Checks the parts against each other (quant_type "nf4", blocksize 64, dequantized dtype float16,
// element types and counts matching the shape) and dequantizes the weight bit-exactly as
// bitsandbytes 0.41.1 dequantize_4bit does:
//   absmax[b] = code2[qabsmax[b]] * absmax2[b / blocksize2] + offset   (float32, multiply then add)
//   w[i] = float16(code[nibble(i)] * absmax[i / 64])                   (float32 multiply, round to even)
// The result is an F16 tensor named `name` of the state's shape, in an owned buffer. Errors name the
// file and the weight.
Tensor dequantize_bnb_nf4(const Bnb4bitParts& parts, const std::string& name, const std::string& path);

}  // namespace baichuan::formats
