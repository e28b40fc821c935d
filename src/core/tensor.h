// A tensor is a view: name, element type, shape and a pointer into memory kept alive by `owner`
// (a memory-mapped file or an owned buffer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace baichuan {

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first (PyTorch order): a weight is [out_features, in_features]
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;

  int64_t numel() const;
  std::string shape_str() const;  // "[11008, 4096]"
};

// Bytes needed for `numel` elements of `dtype`; throws if numel is not a whole number of blocks.
size_t bytes_for(DType dtype, int64_t numel, const std::string& what);

// Element count of a shape, checking every dimension is >= 0 and the product does not overflow.
int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what);

// An owned, zero-initialised byte buffer usable as a Tensor owner.
std::shared_ptr<std::vector<std::byte>> make_buffer(size_t nbytes);

// Throws Error naming `file` and both tensors if two tensors' data share a byte: a crafted file could
// make two weights alias each other (a write through one, or a quantized view, would change both).
void check_tensor_data_disjoint(const std::vector<Tensor>& tensors, const std::string& file);

// Reads an element of F32/F16/BF16 data as float.
float load_float(DType dtype, const std::byte* data, size_t index);

}  // namespace baichuan
