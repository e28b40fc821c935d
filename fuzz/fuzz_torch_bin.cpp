// libFuzzer target for the PyTorch checkpoint reader. Each input goes through the whole path (zip
// directory, pickle, tensor checks) and, separately, through the pickle machine alone, so mutations
// reach the pickle opcodes without having to keep a zip archive consistent. Seeds: tiny checkpoints
// written by Python's zipfile and pickler (fuzz/corpus/fuzz_torch_bin/).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "formats/torch_bin_memory.h"
#include "formats/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  try {
    auto tensors = formats::read_torch_bin_memory(reinterpret_cast<const std::byte*>(data), size, nullptr, "fuzz.bin");
    // Touch every byte of every view so AddressSanitizer catches a tensor pointing outside the input.
    volatile uint8_t sum = 0;
    for (const Tensor& t : tensors)
      for (size_t i = 0; i < t.nbytes; ++i) sum = sum + static_cast<uint8_t>(t.data[i]);
  } catch (const Error&) {
  }
  try {
    std::vector<formats::TorchQuantState> quant_states;  // the bitsandbytes 4-bit layout's lists too
    formats::read_torch_pickle(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.pkl", &quant_states);
  } catch (const Error&) {
  }
  return 0;
}
