// safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the data. Tensors are memory-mapped.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

std::vector<Tensor> read_safetensors(const std::string& path);
// The parser over an in-memory image (for the fuzzer); tensors point into `data` and keep `owner` alive.
std::vector<Tensor> parse_safetensors(const std::byte* data, size_t size, std::shared_ptr<const void> owner,
                                      const std::string& path);

// Writes the tensors (F32, F16 or BF16; name, shape and data of each) in the given order, with
// metadata {"format": "pt"}, atomically (temporary name, then rename).
void write_safetensors(const std::string& path, std::span<const Tensor> tensors);

}  // namespace baichuan::formats
