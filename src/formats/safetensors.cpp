#include "formats/safetensors.h"

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/byte_reader.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"

namespace baichuan::formats {

namespace {

DType parse_dtype(const std::string& s, const std::string& what) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  if (s == "F64") return DType::F64;
  if (s == "I8") return DType::I8;
  if (s == "I16") return DType::I16;
  if (s == "I32") return DType::I32;
  if (s == "I64") return DType::I64;
  if (s == "U8") return DType::U8;
  if (s == "BOOL") return DType::Bool;
  fail(what, ": unknown dtype '", s, "'");
}

}  // namespace

std::vector<Tensor> read_safetensors(const std::string& path) {
  auto file = MappedFile::open(path);
  return parse_safetensors(file->data(), file->size(), file, path);
}

std::vector<Tensor> parse_safetensors(const std::byte* data, size_t size, std::shared_ptr<const void> owner,
                                      const std::string& path) {
  ByteReader in(data, size, path);
  auto header_len = in.read<uint64_t>("the header length");
  if (header_len > in.remaining())
    fail(path, ": truncated: header length ", header_len, " exceeds the ", in.remaining(), " bytes left");
  auto header_text = in.read_bytes(static_cast<size_t>(header_len), "the JSON header");
  const size_t data_start = in.pos();
  const size_t data_size = size - data_start;

  const nlohmann::json header = parse_json_object(header_text, path + " header");

  std::vector<Tensor> tensors;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    std::string what = path + ": tensor '" + name + "'";
    if (!info.is_object()) fail(what, ": entry is not an object");
    auto dtype_it = info.find("dtype");
    auto shape_it = info.find("shape");
    auto offsets_it = info.find("data_offsets");
    if (dtype_it == info.end() || !dtype_it->is_string()) fail(what, ": missing string field 'dtype'");
    if (shape_it == info.end() || !shape_it->is_array()) fail(what, ": missing array field 'shape'");
    if (offsets_it == info.end() || !offsets_it->is_array() || offsets_it->size() != 2)
      fail(what, ": field 'data_offsets' must be an array of two integers");

    Tensor t;
    t.name = name;
    t.dtype = parse_dtype(dtype_it->get<std::string>(), what);
    for (auto& d : *shape_it) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(what, ": shape ", shape_it->dump(), " is invalid");
      t.shape.push_back(d.get<int64_t>());
    }
    for (auto& o : *offsets_it)
      if (!o.is_number_unsigned()) fail(what, ": data_offsets ", offsets_it->dump(), " are invalid");
    auto begin = (*offsets_it)[0].get<uint64_t>();
    auto end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail(what, ": data_offsets [", begin, ", ", end, "] are outside the ", data_size, " data bytes");
    size_t expected = bytes_for(t.dtype, checked_numel(t.shape, what), what);
    if (end - begin != expected)
      fail(what, ": ", end - begin, " data bytes for ", dtype_name(t.dtype),
           " shape ", t.shape_str(), ", expected ", expected);
    t.data = data + data_start + begin;
    t.nbytes = expected;
    t.owner = owner;
    tensors.push_back(std::move(t));
  }
  check_tensor_data_disjoint(tensors, path);
  return tensors;
}

void write_safetensors(const std::string& path, std::span<const Tensor> tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  size_t offset = 0;
  for (const Tensor& t : tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      fail(path, ": cannot write tensor '", t.name, "' of type ", dtype_name(t.dtype), " to safetensors");
    if (header.contains(t.name)) fail(path, ": tensor '", t.name, "' given twice");
    const size_t nbytes = bytes_for(t.dtype, checked_numel(t.shape, t.name), t.name);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  AtomicFile file(path);
  const auto header_len = static_cast<uint64_t>(text.size());
  file.write(&header_len, sizeof header_len);
  file.write(text);
  for (const Tensor& t : tensors) file.write(t.data, bytes_for(t.dtype, checked_numel(t.shape, t.name), t.name));
  file.commit();
}

}  // namespace baichuan::formats
