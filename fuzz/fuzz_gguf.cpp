// Fuzzes the GGUF reader: any input must give a File or a baichuan::Error, never a crash, leak or
// out-of-bounds read. Tensor bytes are all touched so ASan checks that every view lies in the input.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = baichuan::gguf::read_memory(reinterpret_cast<const std::byte*>(data), size, nullptr, "fuzz.gguf");
    unsigned sum = 0;
    for (const auto& t : file.tensors)
      for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
    for (const auto& kv : file.metadata) {
      if (kv.value.type == baichuan::gguf::ValueType::Array) {
        try {
          sum += static_cast<unsigned>(kv.value.as_strings(kv.key).size());
        } catch (const baichuan::Error&) {
        }
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const baichuan::Error&) {
  }
  return 0;
}
