// Reading a torch.save archive that is already in memory. read_torch_bin maps the file and calls this;
// the fuzzer and the tests call it on bytes they hold.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

// Tensors point into `data` and keep `owner` alive; `path` prefixes every error message.
std::vector<Tensor> read_torch_bin_memory(const std::byte* data, size_t size, std::shared_ptr<const void> owner,
                                          const std::string& path);

}  // namespace baichuan::formats
