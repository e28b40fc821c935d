// libFuzzer target for the PyTorch checkpoint reader. Each input goes through the whole path (zip
// directory, pickle, tensor checks) and, separately, through the pickle machine alone, so mutations
// reach the pickle opcodes without having to keep a zip archive consistent. Seeds: tiny checkpoints
// written by Python's zipfile and pickler (fuzz/corpus/fuzz_torch_bin/). A checkpoint that loads has
// every tensor inside the file, holding the bytes its dtype and shape need; every pickle record that
// the machine returns has as many strides as dimensions.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "formats/torch_bin_memory.h"
#include "formats/torch_pickle.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  try {
    auto tensors = formats::read_torch_bin_memory(bytes, size, nullptr, "fuzz.bin");
    fuzz_support::check_tensors_inside(tensors, bytes, size);
  } catch (const Error&) {
  }
  try {
    std::vector<formats::TorchQuantState> quant_states;  // the bitsandbytes 4-bit layout's lists too
    for (const auto& r : formats::read_torch_pickle(fuzz_support::as_text(data, size), "fuzz.pkl", &quant_states))
      if (r.stride.size() != r.size.size())
        fuzz_support::property_failed("pickle record '", r.name, "' has ", r.size.size(), " dims and ", r.stride.size(), " strides");
  } catch (const Error&) {
  }
  return 0;
}
