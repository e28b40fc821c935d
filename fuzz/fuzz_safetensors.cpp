// libFuzzer target for the safetensors parser: any input must parse or throw Error, never crash,
// leak or read out of bounds; a file that parses has every tensor inside the file, holding the bytes
// its dtype and shape need.
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so ASan sees any read past the end.
  auto image = std::make_shared<std::vector<std::byte>>(reinterpret_cast<const std::byte*>(data),
                                                        reinterpret_cast<const std::byte*>(data) + size);
  try {
    auto tensors = baichuan::formats::parse_safetensors(image->data(), image->size(), image, "fuzz.safetensors");
    fuzz_support::check_tensors_inside(tensors, image->data(), image->size(), image);
  } catch (const baichuan::Error&) {
  }
  return 0;
}
