// The pickle (`data.pkl`) inside a torch.save archive, interpreted by a small bounded virtual machine.
// It is never executed as Python: only the opcodes and the few globals torch.save emits for a state
// dict of tensors are understood (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, torch.<Type>Storage), plus what the bitsandbytes 4-bit layout
// pickles in its quant_state lists: torch.Size (builds a tuple of ints) and the dtype constants
// torch.float16 / bfloat16 / float32 / uint8 (plain values, not callable); anything else is an Error naming the opcode
// or global and its offset. That is the security story: a checkpoint cannot make us call os.system.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace baichuan::formats {

// One entry of the state dict: the tensor's name and where its elements live.
struct TorchTensorRecord {
  std::string name;
  DType dtype = DType::F32;     // from the storage type (torch.BFloat16Storage -> BF16)
  std::string storage_key;      // the archive entry is `<archive>/data/<storage_key>`
  int64_t storage_numel = 0;    // elements in the storage, as the persistent id states
  int64_t storage_offset = 0;   // in elements
  std::vector<int64_t> size;    // shape, outermost first
  std::vector<int64_t> stride;  // in elements
};

// The `<weight>.quant_state` entry of a bitsandbytes 4-bit checkpoint (the official Baichuan2-*-Chat-4bits
// layout, bitsandbytes 0.41): the pickled list
//   [absmax, torch.Size(shape), dtype, blocksize, [offset, state2], quant_type, code]
// with state2 = [absmax2, code2, blocksize2, False, torch.float32, None, None] (double quantisation).
// Its tensors are records like the state dict's, named "<key>[0]" etc. for messages.
struct TorchQuantState {
  std::string name;  // the state dict key, e.g. "model.layers.0.mlp.up_proj.weight.quant_state"
  TorchTensorRecord absmax;   // uint8 codes of the block scales
  std::vector<int64_t> shape; // of the dequantized weight, [out, in]
  DType dtype = DType::F16;   // of the dequantized weight
  int64_t blocksize = 0;
  TorchTensorRecord offset;   // 0-dim float32, added to every dequantized block scale
  TorchTensorRecord absmax2;  // float32 scales of the scales
  TorchTensorRecord code2;    // float32 [256] dynamic map of the scale codes
  int64_t blocksize2 = 0;
  DType dtype2 = DType::F32;
  std::string quant_type;     // "nf4" or "fp4"
  TorchTensorRecord code;     // float32 [16]: the 4-bit code table
};

// Runs the pickle and returns the tensors of the state dict it builds, in dict order.
// `what` (the file path) prefixes every error message. With `quant_states`, entries named
// "*.quant_state" holding a bitsandbytes quant_state list are returned there (checked element by
// element: an error names the key, the element and what it should be); without it they are refused
// as any non-tensor entry is.
std::vector<TorchTensorRecord> read_torch_pickle(std::string_view pickle, const std::string& what,
                                                 std::vector<TorchQuantState>* quant_states = nullptr);

}  // namespace baichuan::formats
