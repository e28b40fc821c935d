// GGUF metadata values, their checked accessors, and the ggml type id <-> DType mapping.
// The reader and writer live in gguf_reader.cpp and gguf_writer.cpp.
#include "formats/gguf.h"

#include <cstdint>
#include <limits>

#include "core/error.h"

namespace baichuan::gguf {

std::string value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "U8";
    case ValueType::I8: return "I8";
    case ValueType::U16: return "U16";
    case ValueType::I16: return "I16";
    case ValueType::U32: return "U32";
    case ValueType::I32: return "I32";
    case ValueType::F32: return "F32";
    case ValueType::Bool: return "BOOL";
    case ValueType::String: return "STRING";
    case ValueType::Array: return "ARRAY";
    case ValueType::U64: return "U64";
    case ValueType::I64: return "I64";
    case ValueType::F64: return "F64";
  }
  return cat("type ", static_cast<uint32_t>(t));
}

namespace {

std::string describe(const Value& v) {
  if (v.type == ValueType::Array) {
    const auto* a = std::get_if<Array>(&v.v);
    return a ? cat("ARRAY of ", value_type_name(a->elem_type)) : "ARRAY";
  }
  return value_type_name(v.type);
}

Value array_of(ValueType elem, std::vector<Value> items) {
  return {ValueType::Array, Array{elem, std::move(items)}};
}

const Array& array_of_kind(const Value& v, const std::string& key, std::string_view expected) {
  const auto* a = std::get_if<Array>(&v.v);
  if (!a) fail(key, ": expected an array of ", expected, ", found ", describe(v));
  return *a;
}

}  // namespace

Value Value::strings(const std::vector<std::string>& xs) {
  std::vector<Value> items;
  items.reserve(xs.size());
  for (const auto& x : xs) items.push_back(str(x));
  return array_of(ValueType::String, std::move(items));
}

Value Value::f32s(const std::vector<float>& xs) {
  std::vector<Value> items;
  items.reserve(xs.size());
  for (float x : xs) items.push_back(f32(x));
  return array_of(ValueType::F32, std::move(items));
}

Value Value::i32s(const std::vector<int32_t>& xs) {
  std::vector<Value> items;
  items.reserve(xs.size());
  for (int32_t x : xs) items.push_back(i32(x));
  return array_of(ValueType::I32, std::move(items));
}

Value Value::bytes(const std::string& raw) {
  std::vector<Value> items;
  items.reserve(raw.size());
  for (char c : raw) items.push_back({ValueType::U8, uint64_t{static_cast<unsigned char>(c)}});
  return array_of(ValueType::U8, std::move(items));
}

int64_t Value::as_int(const std::string& key) const {
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(key, ": value ", *u, " is too large");
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  fail(key, ": expected an integer, found ", describe(*this));
}

double Value::as_float(const std::string& key) const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  fail(key, ": expected a number, found ", describe(*this));
}

bool Value::as_bool(const std::string& key) const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  fail(key, ": expected a BOOL, found ", describe(*this));
}

const std::string& Value::as_string(const std::string& key) const {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  fail(key, ": expected a STRING, found ", describe(*this));
}

const Array& Value::as_array(const std::string& key) const {
  if (const auto* a = std::get_if<Array>(&v)) return *a;
  fail(key, ": expected an ARRAY, found ", describe(*this));
}

std::vector<std::string> Value::as_strings(const std::string& key) const {
  const Array& a = array_of_kind(*this, key, "STRING");
  if (a.elem_type != ValueType::String) fail(key, ": expected an array of STRING, found ", describe(*this));
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const auto& item : a.items) out.push_back(item.as_string(key));
  return out;
}

std::vector<float> Value::as_floats(const std::string& key) const {
  const Array& a = array_of_kind(*this, key, "numbers");
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const auto& item : a.items) out.push_back(static_cast<float>(item.as_float(key)));
  return out;
}

std::vector<int32_t> Value::as_ints(const std::string& key) const {
  const Array& a = array_of_kind(*this, key, "integers");
  std::vector<int32_t> out;
  out.reserve(a.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    int64_t x = a.items[i].as_int(key);
    if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
      fail(key, ": item ", i, " (", x, ") does not fit in 32 bits");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

std::string Value::as_bytes(const std::string& key) const {
  const Array& a = array_of_kind(*this, key, "U8");
  if (a.elem_type != ValueType::U8 && a.elem_type != ValueType::I8)
    fail(key, ": expected an array of U8, found ", describe(*this));
  std::string out;
  out.reserve(a.items.size());
  for (const auto& item : a.items) out.push_back(static_cast<char>(item.as_int(key)));
  return out;
}

const Value* File::find(const std::string& key) const {
  for (const auto& kv : metadata)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const Value& File::get(const std::string& key) const {
  if (const Value* v = find(key)) return *v;
  fail(path, ": missing metadata key '", key, "'");
}

DType dtype_from_ggml(uint32_t ggml_type, const std::string& what) {
  switch (ggml_type) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 6: return DType::Q5_0;
    case 7: return DType::Q5_1;
    case 8: return DType::Q8_0;
    case 9: return DType::Q8_1;
    case 10: return DType::Q2_K;
    case 11: return DType::Q3_K;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 15: return DType::Q8_K;
    case 24: return DType::I8;
    case 25: return DType::I16;
    case 26: return DType::I32;
    case 27: return DType::I64;
    case 28: return DType::F64;
    case 30: return DType::BF16;
  }
  fail(what, ": unknown or unsupported ggml type ", ggml_type);
}

uint32_t ggml_from_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q5_0: return 6;
    case DType::Q5_1: return 7;
    case DType::Q8_0: return 8;
    case DType::Q8_1: return 9;
    case DType::Q2_K: return 10;
    case DType::Q3_K: return 11;
    case DType::Q4_K: return 12;
    case DType::Q5_K: return 13;
    case DType::Q6_K: return 14;
    case DType::Q8_K: return 15;
    case DType::I8: return 24;
    case DType::I16: return 25;
    case DType::I32: return 26;
    case DType::I64: return 27;
    case DType::F64: return 28;
    case DType::BF16: return 30;
    case DType::U8:
    case DType::Bool:
    case DType::NF4: break;
  }
  fail(dtype_name(dtype), " tensors have no GGUF type");
}

}  // namespace baichuan::gguf
