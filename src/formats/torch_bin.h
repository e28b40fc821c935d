// PyTorch checkpoints (`torch.save` zip archives: `<name>/data.pkl` pickle + `<name>/data/<key>`
// storages). The pickle is interpreted by a small, bounded virtual machine that understands only the
// opcodes and globals torch.save emits for a state dict of tensors. Stored (uncompressed) storages are
// memory-mapped; nothing is held twice.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

std::vector<Tensor> read_torch_bin(const std::string& path);

}  // namespace baichuan::formats
