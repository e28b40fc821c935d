// libFuzzer target for the LoRA adapter readers (PEFT adapter_config.json + safetensors, GGUF LoRA):
// any input must read or throw Error, never crash, leak or read out of bounds; an adapter that reads
// passes validate_lora_adapter against the model it was read for.
// Input: byte 0 chooses the reader (even: PEFT, odd: GGUF). PEFT: bytes 1-4 a little-endian length n,
// then n bytes of adapter_config.json, then the safetensors image. GGUF: the rest is the file image.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_support.h"
#include "model/lora_adapter.h"

namespace {

// A small Baichuan-shaped model (head_dim 4, so the Q/K row permutation is exercised), the one the
// seeds in fuzz/corpus/fuzz_lora_adapter were made for (fuzz/make_seeds.py).
baichuan::ModelConfig fuzz_lora_model() {
  baichuan::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_heads = 2;
  c.num_layers = 2;
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const baichuan::ModelConfig model = fuzz_lora_model();
  try {
    baichuan::LoraAdapter adapter;
    if (data[0] % 2 == 1) {
      // A heap copy of exactly the image, so ASan sees any read past the end.
      std::vector<std::byte> image(reinterpret_cast<const std::byte*>(data) + 1, reinterpret_cast<const std::byte*>(data) + size);
      adapter = baichuan::parse_gguf_lora_adapter(image.data(), image.size(), "fuzz.gguf", model);
    } else {
      if (size < 5) return 0;
      uint32_t n = 0;
      std::memcpy(&n, data + 1, 4);
      if (n > size - 5) return 0;
      const std::string config(reinterpret_cast<const char*>(data) + 5, n);
      std::vector<std::byte> image(reinterpret_cast<const std::byte*>(data) + 5 + n, reinterpret_cast<const std::byte*>(data) + size);
      adapter = baichuan::parse_peft_adapter(config, image.data(), image.size(), "fuzz-adapter", model);
    }
    try {
      baichuan::validate_lora_adapter(adapter, model);
    } catch (const baichuan::Error& e) {
      fuzz_support::property_failed("an adapter that was read fails validation: ", e.what());
    }
  } catch (const baichuan::Error&) {
  }
  return 0;
}
