// GGUF v3 (and v2) files: the project's native format, interchangeable with llama.cpp.
// Layout: magic "GGUF", version, tensor count, metadata count, metadata key/values, tensor infos
// (name, dims innermost-first, ggml type, offset), padding to `general.alignment` (default 32), data.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "core/tensor.h"

namespace baichuan::gguf {

// Limits the reader enforces; the writer checks them too, so every file we write reads back.
inline constexpr size_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 8;                  // llama.cpp allows 4
inline constexpr size_t kMaxNameBytes = 65535;           // keys (the spec's limit) and tensor names
inline constexpr size_t kMaxStringBytes = size_t{1} << 28;  // any other string value
inline constexpr int kMaxArrayDepth = 8;                 // arrays nested inside arrays

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

struct Value;
struct Array {
  ValueType elem_type = ValueType::U8;
  std::vector<Value> items;
};

// One metadata value. Integers of every width are kept as int64/uint64 with the file's type noted.
struct Value {
  ValueType type = ValueType::U32;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;

  static Value u32(uint32_t x) { return {ValueType::U32, uint64_t{x}}; }
  static Value i32(int32_t x) { return {ValueType::I32, int64_t{x}}; }
  static Value u64(uint64_t x) { return {ValueType::U64, x}; }
  static Value f32(float x) { return {ValueType::F32, double{x}}; }
  static Value boolean(bool x) { return {ValueType::Bool, x}; }
  static Value str(std::string s) { return {ValueType::String, std::move(s)}; }
  static Value strings(const std::vector<std::string>& xs);
  static Value f32s(const std::vector<float>& xs);
  static Value i32s(const std::vector<int32_t>& xs);
  static Value bytes(const std::string& raw);  // array of U8

  // Checked accessors: throw Error naming `key` when the value has another type.
  int64_t as_int(const std::string& key) const;  // any integer type
  double as_float(const std::string& key) const;  // F32/F64 or any integer type
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const Array& as_array(const std::string& key) const;
  std::vector<std::string> as_strings(const std::string& key) const;
  std::vector<float> as_floats(const std::string& key) const;
  std::vector<int32_t> as_ints(const std::string& key) const;
  std::string as_bytes(const std::string& key) const;  // array of U8/I8
};

struct KeyValue {
  std::string key;
  Value value;
};

struct File {
  uint32_t version = 3;
  size_t alignment = 32;
  std::vector<KeyValue> metadata;  // in file order
  std::vector<Tensor> tensors;     // shapes outermost-first (reversed from GGUF's ne[]), data mmap'd

  const Value* find(const std::string& key) const;  // nullptr if absent
  const Value& get(const std::string& key) const;   // throws Error naming the file and key if absent
  std::string path;
};

// "U8", "STRING", "ARRAY", ... for messages; "type 42" for ids outside the enum.
std::string value_type_name(ValueType t);

// Maps a file's ggml type id to a DType; throws for types the project does not know.
DType dtype_from_ggml(uint32_t ggml_type, const std::string& what);
uint32_t ggml_from_dtype(DType dtype);

// Memory-maps and validates the whole header (counts, lengths, types, shapes, offsets and sizes
// against the file length) before any tensor data is touched. Throws Error naming the path.
File read_file(const std::string& path);

// The parser behind read_file, over a file image already in memory (also the fuzz entry point).
// Tensor data points into `data`; each tensor's owner is `owner`. `path` names the source in errors.
File read_memory(const std::byte* data, size_t size, std::shared_ptr<const void> owner,
                 const std::string& path);

// A tensor to be written: its data is produced on demand, one tensor at a time, so a writer never
// holds more than one tensor in memory. `produce` must fill exactly bytes_for(dtype, numel) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first, as everywhere in the project
  std::function<void(std::byte* out, size_t nbytes)> produce;
};

// Writes a GGUF v3 file atomically (temporary name, then rename).
void write_file(const std::string& path, const std::vector<KeyValue>& metadata,
                const std::vector<TensorToWrite>& tensors, size_t alignment = 32);

}  // namespace baichuan::gguf
