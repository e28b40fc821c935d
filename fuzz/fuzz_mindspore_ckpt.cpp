// libFuzzer target for the MindSpore checkpoint parser: any input must parse or throw Error, never
// crash, leak or read out of bounds; a file that parses has every tensor view inside the file (a tensor
// assembled from parts is a copy), each holding the bytes its dtype and shape need.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "fuzz_support.h"

namespace baichuan::formats {
// Defined in src/formats/mindspore_ckpt.cpp: the reader's parser over an in-memory image.
std::vector<Tensor> parse_mindspore_ckpt(const std::byte* data, size_t size, const std::shared_ptr<const void>& owner,
                                         const std::string& path);
}  // namespace baichuan::formats

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so ASan sees any read past the end.
  auto image = std::make_shared<std::vector<std::byte>>(reinterpret_cast<const std::byte*>(data),
                                                        reinterpret_cast<const std::byte*>(data) + size);
  try {
    auto tensors = baichuan::formats::parse_mindspore_ckpt(image->data(), image->size(), image, "fuzz.ckpt");
    fuzz_support::check_tensors_inside(tensors, image->data(), image->size(), image);
  } catch (const baichuan::Error&) {
  }
  return 0;
}
