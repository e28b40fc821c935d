// Fuzzes the GGUF reader: any input must give a File or a baichuan::Error, never a crash, leak or
// out-of-bounds read. Properties of a file that parses: every tensor lies inside the input and holds
// the bytes its type and shape need; and if it opens as a Baichuan 2 checkpoint, its config is valid
// and every tensor the architecture needs is there with the shape the config implies.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"
#include "fuzz_support.h"
#include "model/checkpoint.h"
#include "model/gguf_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  gguf::File file;
  try {
    file = gguf::read_memory(bytes, size, nullptr, "fuzz.gguf");
  } catch (const Error&) {
    return 0;
  }
  fuzz_support::check_tensors_inside(file.tensors, bytes, size);
  for (const auto& kv : file.metadata) {
    if (kv.value.type != gguf::ValueType::Array) continue;
    try {
      (void)kv.value.as_strings(kv.key);
    } catch (const Error&) {
    }
  }
  // The whole checkpoint path (config from metadata, tokenizer, tensor names and shapes).
  const std::string path = fuzz_support::temp_dir().write("fuzz.gguf", fuzz_support::as_text(data, size));
  try {
    Checkpoint checkpoint = open_gguf_checkpoint(path, {});
    try {
      checkpoint.config.validate("fuzz.gguf");
    } catch (const Error& e) {
      fuzz_support::property_failed("a checkpoint opened with an invalid config: ", e.what());
    }
    for (const auto& [name, shape] : canonical_tensors(checkpoint.config)) {
      auto it = checkpoint.tensors.find(name);
      if (it == checkpoint.tensors.end()) fuzz_support::property_failed("opened without tensor ", name);
      if (it->second.shape != shape) fuzz_support::property_failed("tensor ", name, " has shape ", it->second.shape_str());
    }
  } catch (const Error&) {
  }
  return 0;
}
