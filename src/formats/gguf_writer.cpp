// GGUF v3 writer: streams header, metadata and tensor infos, then each tensor's data produced on
// demand into one reusable buffer, to a temporary file renamed into place at the end.
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/gguf.h"

namespace baichuan::gguf {

namespace {

template <typename T>
void put(AtomicFile& out, T x) {
  static_assert(std::endian::native == std::endian::little);
  out.write(&x, sizeof x);
}

void put_string(AtomicFile& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.write(s);
}

uint64_t unsigned_value(const Value& v, uint64_t max, const std::string& what) {
  const auto* u = std::get_if<uint64_t>(&v.v);
  if (!u) fail(what, ": a ", value_type_name(v.type), " value must hold an unsigned integer");
  if (*u > max) fail(what, ": value ", *u, " does not fit in ", value_type_name(v.type));
  return *u;
}

template <typename T>
T signed_value(const Value& v, const std::string& what) {
  const auto* i = std::get_if<int64_t>(&v.v);
  if (!i) fail(what, ": a ", value_type_name(v.type), " value must hold a signed integer");
  if (*i < std::numeric_limits<T>::min() || *i > std::numeric_limits<T>::max())
    fail(what, ": value ", *i, " does not fit in ", value_type_name(v.type));
  return static_cast<T>(*i);
}

template <typename T>
const T& held(const Value& v, const std::string& what) {
  const auto* x = std::get_if<T>(&v.v);
  if (!x) fail(what, ": the ", value_type_name(v.type), " value holds another kind of data");
  return *x;
}

// Writes the value's payload (its type id is written by the caller: once per key, once per array).
void put_value(AtomicFile& out, const Value& v, int depth, const std::string& what) {
  switch (v.type) {
    case ValueType::U8: return put(out, static_cast<uint8_t>(unsigned_value(v, UINT8_MAX, what)));
    case ValueType::U16: return put(out, static_cast<uint16_t>(unsigned_value(v, UINT16_MAX, what)));
    case ValueType::U32: return put(out, static_cast<uint32_t>(unsigned_value(v, UINT32_MAX, what)));
    case ValueType::U64: return put(out, unsigned_value(v, UINT64_MAX, what));
    case ValueType::I8: return put(out, signed_value<int8_t>(v, what));
    case ValueType::I16: return put(out, signed_value<int16_t>(v, what));
    case ValueType::I32: return put(out, signed_value<int32_t>(v, what));
    case ValueType::I64: return put(out, signed_value<int64_t>(v, what));
    case ValueType::F32: return put(out, static_cast<float>(held<double>(v, what)));
    case ValueType::F64: return put(out, held<double>(v, what));
    case ValueType::Bool: return put(out, static_cast<uint8_t>(held<bool>(v, what) ? 1 : 0));
    case ValueType::String: {
      const auto& s = held<std::string>(v, what);
      if (s.size() > kMaxStringBytes) fail(what, ": string of ", s.size(), " bytes exceeds the limit of ", kMaxStringBytes);
      return put_string(out, s);
    }
    case ValueType::Array: {
      if (depth + 1 > kMaxArrayDepth) fail(what, ": arrays nested more than ", kMaxArrayDepth, " deep");
      const auto& a = held<Array>(v, what);
      if (static_cast<uint32_t>(a.elem_type) > static_cast<uint32_t>(ValueType::F64))
        fail(what, ": unknown array element ", value_type_name(a.elem_type));
      put(out, static_cast<uint32_t>(a.elem_type));
      put<uint64_t>(out, a.items.size());
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (a.items[i].type != a.elem_type)
          fail(what, ": array item ", i, " has type ", value_type_name(a.items[i].type), ", expected ",
               value_type_name(a.elem_type));
        put_value(out, a.items[i], depth + 1, what);
      }
      return;
    }
  }
  fail(what, ": unknown value ", value_type_name(v.type));
}

struct TensorLayout {
  std::vector<int64_t> ne;  // innermost first, as GGUF stores it
  size_t nbytes = 0;
  uint64_t offset = 0;  // relative to the data section
};

// Checks every tensor and computes its offset before anything is written.
std::vector<TensorLayout> plan_tensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                                       size_t alignment) {
  std::vector<TensorLayout> layout(tensors.size());
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    std::string what = cat(path, ": tensor '", t.name, "'");
    if (t.name.size() > kMaxNameBytes) fail(what, ": name is longer than ", kMaxNameBytes, " bytes");
    if (!seen.insert(t.name).second) fail(what, ": duplicate tensor name");
    if (t.shape.size() > kMaxDims) fail(what, ": has ", t.shape.size(), " dimensions, at most ", kMaxDims, " are supported");
    int64_t numel = checked_numel(t.shape, what);
    auto info = dtype_info(t.dtype);
    int64_t innermost = t.shape.empty() ? 1 : t.shape.back();
    if (innermost % static_cast<int64_t>(info.block_elems) != 0)
      fail(what, ": innermost dimension ", innermost, " is not a multiple of the ", info.name, " block size ",
           info.block_elems);
    if (t.dtype == DType::U8 || t.dtype == DType::Bool)
      fail(what, ": ", dtype_name(t.dtype), " tensors have no GGUF type");
    if (!t.produce && numel > 0) fail(what, ": no data producer");
    TensorLayout& l = layout[i];
    l.ne.assign(t.shape.rbegin(), t.shape.rend());
    l.nbytes = bytes_for(t.dtype, numel, what);
    l.offset = offset;
    uint64_t padded = l.nbytes + (alignment - l.nbytes % alignment) % alignment;
    if (padded < l.nbytes || offset > std::numeric_limits<uint64_t>::max() - padded) fail(what, ": file is too large");
    offset += padded;
  }
  return layout;
}

}  // namespace

void write_file(const std::string& path, const std::vector<KeyValue>& metadata,
                const std::vector<TensorToWrite>& tensors, size_t alignment) {
  if (!std::has_single_bit(alignment) || alignment > UINT32_MAX)
    fail(path, ": alignment ", alignment, " is not a power of two below 2^32");
  // The file says its alignment in general.alignment; readers assume 32 when it is absent.
  std::vector<KeyValue> extra;
  std::unordered_set<std::string> keys;
  bool has_alignment = false;
  for (const auto& kv : metadata) {
    if (kv.key.size() > kMaxNameBytes) fail(path, ": metadata key '", kv.key.substr(0, 64), "...' is too long");
    if (!keys.insert(kv.key).second) fail(path, ": duplicate metadata key '", kv.key, "'");
    if (kv.key == "general.alignment") {
      const auto* a = std::get_if<uint64_t>(&kv.value.v);
      if (kv.value.type != ValueType::U32 || !a || *a != alignment)
        fail(path, ": metadata key 'general.alignment' must be a U32 equal to the alignment ", alignment);
      has_alignment = true;
    }
  }
  if (!has_alignment && alignment != kDefaultAlignment)
    extra.push_back({"general.alignment", Value::u32(static_cast<uint32_t>(alignment))});
  auto layout = plan_tensors(path, tensors, alignment);

  AtomicFile out(path);
  out.write("GGUF");
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, metadata.size() + extra.size());
  auto put_key_value = [&](const KeyValue& kv) {
    if (static_cast<uint32_t>(kv.value.type) > static_cast<uint32_t>(ValueType::F64))
      fail(path, ": metadata key '", kv.key, "': unknown ", value_type_name(kv.value.type));
    put_string(out, kv.key);
    put(out, static_cast<uint32_t>(kv.value.type));
    put_value(out, kv.value, 0, cat(path, ": metadata key '", kv.key, "'"));
  };
  for (const auto& kv : metadata) put_key_value(kv);
  for (const auto& kv : extra) put_key_value(kv);
  for (size_t i = 0; i < tensors.size(); ++i) {
    put_string(out, tensors[i].name);
    put<uint32_t>(out, static_cast<uint32_t>(layout[i].ne.size()));
    for (int64_t ne : layout[i].ne) put<uint64_t>(out, static_cast<uint64_t>(ne));
    put<uint32_t>(out, ggml_from_dtype(tensors[i].dtype));
    put<uint64_t>(out, layout[i].offset);
  }
  out.pad_to(alignment);

  std::vector<std::byte> buffer;
  for (size_t i = 0; i < tensors.size(); ++i) {
    buffer.resize(layout[i].nbytes);
    if (!buffer.empty()) tensors[i].produce(buffer.data(), buffer.size());
    out.write(buffer.data(), buffer.size());
    out.pad_to(alignment);
  }
  out.commit();
}

}  // namespace baichuan::gguf
