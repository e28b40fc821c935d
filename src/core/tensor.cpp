#include "core/tensor.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"

namespace baichuan {

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(what, ": negative dimension ", d);
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) fail(what, ": shape is too large");
    n *= d;
  }
  return n;
}

int64_t Tensor::numel() const { return checked_numel(shape, name); }

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t bytes_for(DType dtype, int64_t numel, const std::string& what) {
  auto info = dtype_info(dtype);
  if (numel % static_cast<int64_t>(info.block_elems) != 0)
    fail(what, ": ", numel, " elements is not a whole number of ", info.name, " blocks of ", info.block_elems);
  auto blocks = static_cast<size_t>(numel) / info.block_elems;
  if (blocks > std::numeric_limits<size_t>::max() / info.block_bytes) fail(what, ": tensor is too large");
  return blocks * info.block_bytes;
}

std::shared_ptr<std::vector<std::byte>> make_buffer(size_t nbytes) {
  return std::make_shared<std::vector<std::byte>>(nbytes);
}

float load_float(DType dtype, const std::byte* data, size_t index) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, data + 4 * index, 4);
      return f;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * index, 2);
      return f16_to_f32(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * index, 2);
      return bf16_to_f32(h);
    }
    default:
      fail("cannot read ", dtype_name(dtype), " values as float");
  }
}

void check_tensor_data_disjoint(const std::vector<Tensor>& tensors, const std::string& file) {
  std::vector<const Tensor*> by_start;
  for (const auto& t : tensors)
    if (t.nbytes > 0) by_start.push_back(&t);
  std::sort(by_start.begin(), by_start.end(), [](const Tensor* a, const Tensor* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_start.size(); ++i) {
    const Tensor &a = *by_start[i - 1], &b = *by_start[i];
    if (b.data < a.data + a.nbytes)
      fail(file, ": the data of tensor '", b.name, "' overlaps the data of tensor '", a.name,
           "' (a corrupted or crafted file)");
  }
}

}  // namespace baichuan
