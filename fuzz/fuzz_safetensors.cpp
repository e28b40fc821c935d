// libFuzzer target for the safetensors parser: any input must parse or throw Error, never crash,
// leak or read out of bounds.
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so ASan sees any read past the end.
  auto image = std::make_shared<std::vector<std::byte>>(reinterpret_cast<const std::byte*>(data),
                                                        reinterpret_cast<const std::byte*>(data) + size);
  try {
    unsigned sum = 0;
    for (const auto& t : baichuan::formats::parse_safetensors(image->data(), image->size(), image, "fuzz.safetensors"))
      for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const baichuan::Error&) {
  }
  return 0;
}
