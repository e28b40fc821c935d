// Writing Baichuan 2 checkpoints as GGUF (model/gguf_checkpoint.h reads them): the metadata and the
// streaming writer that convert, quantize, init, merge-lora and training's exports share.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "convert/quant_mix.h"
#include "formats/gguf.h"
#include "model/checkpoint.h"

namespace baichuan {

class ThreadPool;

// One tensor written by write_gguf_checkpoint, for progress reports.
struct TensorWritten {
  size_t index = 0, count = 0;  // index in file order, number of tensors
  const Tensor* source = nullptr;
  const gguf::TensorToWrite* written = nullptr;
  double seconds = 0;  // time spent producing it
};

struct ConvertOptions {
  DType type = DType::F16;         // the matrices' type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, ...); norms stay F32
  QuantMix mix = QuantMix::Pure;   // or a llama.cpp mix (then `type` is its base type; see quant_mix.h)
  // Store NormHead rows already divided by their L2 norm (in float32, before rounding to the file's
  // type), so that engines that do not apply NormHead (llama.cpp, LM Studio, Ollama) compute the
  // official logits. A normalised head asked as BF16 is stored as F16 (unit rows fit F16's range and
  // keep 3 more bits). false (`convert --raw-head`) keeps the rows as they are: lossless round trips,
  // right only in engines that normalise, like this one. Quantized heads are always normalised.
  bool normalize_head = true;
  std::string name;                // general.name
  ThreadPool* pool = nullptr;      // rows of each tensor are converted in parallel on it (else serially)
  std::function<void(const TensorWritten&)> on_tensor;  // called after each tensor is produced
  // Changes rows on their way out (merge-lora adds LoRA deltas): given a tensor's name, a function
  // called with each row's index in the source's own row order and its values as float32 (from
  // several threads at once); an empty function leaves the tensor as it is.
  std::function<std::function<void(int64_t row, float* values)>(const std::string& name)> row_edit;

  FileType file_type() const { return {type, mix}; }
};

// The GGUF metadata of a Baichuan 2 model whose matrices are stored as `type` (general.file_type is
// llama.cpp's value for it).
std::vector<gguf::KeyValue> gguf_metadata(const ModelConfig& config, const Tokenizer& tokenizer,
                                          const std::string& generation_json, const FileType& type, const std::string& name,
                                          bool head_normalized);
// Streams `checkpoint` into a GGUF file, one tensor in memory at a time (written atomically). Each
// matrix gets tensor_type_for(options.file_type(), ...); a source tensor already of that type is copied
// as is, others are read as float32 (dequantized if need be) and stored in the new type.
void write_gguf_checkpoint(const Checkpoint& checkpoint, const std::string& out_path, const ConvertOptions& options);

}  // namespace baichuan
