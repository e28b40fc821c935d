// safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the data. Tensors are memory-mapped.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

std::vector<Tensor> read_safetensors(const std::string& path);

}  // namespace baichuan::formats
