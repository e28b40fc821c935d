// The pickle (`data.pkl`) inside a torch.save archive, interpreted by a small bounded virtual machine.
// It is never executed as Python: only the opcodes and the few globals torch.save emits for a state
// dict of tensors are understood (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, torch.<Type>Storage); anything else is an Error naming the opcode
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

// Runs the pickle and returns the tensors of the state dict it builds, in dict order.
// `what` (the file path) prefixes every error message.
std::vector<TorchTensorRecord> read_torch_pickle(std::string_view pickle, const std::string& what);

}  // namespace baichuan::formats
