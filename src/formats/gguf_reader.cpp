// GGUF reader. Files are untrusted: every read goes through ByteReader, every count is checked against
// the bytes left before memory is reserved, and every error names the file and the field at fault.
#include <bit>
#include <cstdint>
#include <limits>
#include <unordered_set>

#include "core/byte_reader.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

namespace baichuan::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF is little endian; so is every supported CPU");

namespace {

// Smallest encodings, used to reject counts that cannot fit in the rest of the file.
constexpr size_t kMinKeyValueBytes = 8 + 4 + 1;       // key length, value type, one-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // name length, n_dims, type, offset
// Each metadata value costs ~48 bytes in memory however small it is in the file, so a crafted file of
// huge U8 arrays could need 48x its size. Real tokenizers have well under a million values.
constexpr uint64_t kMaxMetadataValues = uint64_t{1} << 24;

size_t min_value_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: case ValueType::String: return 8;
    case ValueType::Array: return 4 + 8;
  }
  return 1;
}

// Names from the file go into messages: escape control bytes and cut very long ones.
std::string printable(std::string_view s) {
  constexpr size_t kShown = 120;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kShown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kShown) out += cat("...(", s.size(), " bytes)");
  return out;
}

class Parser {
 public:
  Parser(const std::byte* data, size_t size, const std::string& path) : in_(data, size, path), base_(data), path_(path) {}

  File parse(const std::shared_ptr<const void>& owner);

 private:
  std::string read_string(size_t max_bytes, const std::string& what) {
    uint64_t len = in_.read<uint64_t>(what);
    if (len > max_bytes) fail(path_, ": ", what, ": string length ", len, " exceeds the limit of ", max_bytes, " bytes");
    return std::string(in_.read_bytes(static_cast<size_t>(len), what));
  }

  ValueType read_value_type(const std::string& what) {
    uint32_t t = in_.read<uint32_t>(what);
    if (t > static_cast<uint32_t>(ValueType::F64)) fail(path_, ": ", what, ": unknown value type ", t);
    return static_cast<ValueType>(t);
  }

  Value read_value(ValueType type, int depth, const std::string& what);
  Array read_array(int depth, const std::string& what);
  void read_metadata(File& file, uint64_t count);
  void read_tensor_infos(File& file, uint64_t count, std::vector<uint64_t>& offsets);

  ByteReader in_;
  const std::byte* base_;
  const std::string& path_;
  uint64_t values_ = 0;  // array items read so far, against kMaxMetadataValues
};

Value Parser::read_value(ValueType type, int depth, const std::string& what) {
  switch (type) {
    case ValueType::U8: return {type, uint64_t{in_.read<uint8_t>(what)}};
    case ValueType::I8: return {type, int64_t{in_.read<int8_t>(what)}};
    case ValueType::U16: return {type, uint64_t{in_.read<uint16_t>(what)}};
    case ValueType::I16: return {type, int64_t{in_.read<int16_t>(what)}};
    case ValueType::U32: return {type, uint64_t{in_.read<uint32_t>(what)}};
    case ValueType::I32: return {type, int64_t{in_.read<int32_t>(what)}};
    case ValueType::U64: return {type, in_.read<uint64_t>(what)};
    case ValueType::I64: return {type, in_.read<int64_t>(what)};
    case ValueType::F32: return {type, double{in_.read<float>(what)}};
    case ValueType::F64: return {type, in_.read<double>(what)};
    case ValueType::Bool: {
      uint8_t b = in_.read<uint8_t>(what);
      if (b > 1) fail(path_, ": ", what, ": BOOL value ", int{b}, " at offset ", in_.pos() - 1, " is not 0 or 1");
      return {type, b == 1};
    }
    case ValueType::String: return {type, read_string(kMaxStringBytes, what)};
    case ValueType::Array: return {type, read_array(depth + 1, what)};
  }
  fail(path_, ": ", what, ": unknown value type ", static_cast<uint32_t>(type));
}

Array Parser::read_array(int depth, const std::string& what) {
  if (depth > kMaxArrayDepth) fail(path_, ": ", what, ": arrays nested more than ", kMaxArrayDepth, " deep");
  Array a;
  a.elem_type = read_value_type(what);
  uint64_t count = in_.read<uint64_t>(what);
  size_t min_bytes = min_value_bytes(a.elem_type);
  if (count > in_.remaining() / min_bytes)
    fail(path_, ": ", what, ": array of ", count, " ", value_type_name(a.elem_type), " items at offset ", in_.pos() - 8,
         " cannot fit in the ", in_.remaining(), " bytes left in the file");
  values_ += count;  // count < file size here, so no overflow
  if (values_ > kMaxMetadataValues)
    fail(path_, ": ", what, ": the metadata holds more than ", kMaxMetadataValues, " array items");
  a.items.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) a.items.push_back(read_value(a.elem_type, depth, what));
  return a;
}

void Parser::read_metadata(File& file, uint64_t count) {
  if (count > in_.remaining() / kMinKeyValueBytes)
    fail(path_, ": metadata count ", count, " cannot fit in the ", in_.remaining(), " bytes left in the file");
  file.metadata.reserve(static_cast<size_t>(count));
  std::unordered_set<std::string> seen;
  for (uint64_t i = 0; i < count; ++i) {
    std::string key = read_string(kMaxNameBytes, cat("the key of metadata entry #", i));
    std::string what = cat("metadata key '", printable(key), "'");
    if (!seen.insert(key).second) fail(path_, ": duplicate ", what);
    ValueType type = read_value_type(what);
    file.metadata.push_back({std::move(key), read_value(type, 0, what)});
  }
}

void Parser::read_tensor_infos(File& file, uint64_t count, std::vector<uint64_t>& offsets) {
  if (count > in_.remaining() / kMinTensorInfoBytes)
    fail(path_, ": tensor count ", count, " cannot fit in the ", in_.remaining(), " bytes left in the file");
  file.tensors.reserve(static_cast<size_t>(count));
  offsets.reserve(static_cast<size_t>(count));
  std::unordered_set<std::string> seen;
  for (uint64_t i = 0; i < count; ++i) {
    Tensor t;
    t.name = read_string(kMaxNameBytes, cat("the name of tensor #", i));
    std::string what = cat("tensor '", printable(t.name), "'");
    std::string full = cat(path_, ": ", what);
    if (!seen.insert(t.name).second) fail(full, ": duplicate tensor name");

    uint32_t n_dims = in_.read<uint32_t>(what);
    if (n_dims > kMaxDims) fail(full, ": has ", n_dims, " dimensions, at most ", kMaxDims, " are supported");
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {  // ne[0] is innermost; our shapes are outermost first
      uint64_t ne = in_.read<uint64_t>(what);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(full, ": dimension ne[", d, "] = ", ne, " is too large");
      t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne);
    }
    t.dtype = dtype_from_ggml(in_.read<uint32_t>(what), full);
    uint64_t offset = in_.read<uint64_t>(what);

    int64_t numel = checked_numel(t.shape, full);
    auto info = dtype_info(t.dtype);
    int64_t innermost = n_dims ? t.shape.back() : 1;
    if (innermost % static_cast<int64_t>(info.block_elems) != 0)
      fail(full, ": innermost dimension ", innermost, " of shape ", t.shape_str(), " is not a multiple of the ",
           info.name, " block size ", info.block_elems);
    t.nbytes = bytes_for(t.dtype, numel, full);
    if (offset % file.alignment != 0)
      fail(full, ": data offset ", offset, " is not a multiple of the alignment ", file.alignment);
    offsets.push_back(offset);
    file.tensors.push_back(std::move(t));
  }
}

File Parser::parse(const std::shared_ptr<const void>& owner) {
  File file;
  file.path = path_;
  if (in_.size() < 4 || std::string_view(reinterpret_cast<const char*>(in_.here()), 4) != "GGUF")
    fail(path_, ": not a GGUF file (it does not start with the magic bytes \"GGUF\")");
  in_.skip(4, "the magic");

  uint32_t version = in_.read<uint32_t>("the version");
  if (version != 2 && version != 3) {
    uint32_t swapped = ((version & 0xffu) << 24) | ((version & 0xff00u) << 8) | ((version >> 8) & 0xff00u) | (version >> 24);
    if (swapped == 2 || swapped == 3) fail(path_, ": big-endian GGUF files are not supported");
    fail(path_, ": GGUF version ", version, " is not supported (only versions 2 and 3)");
  }
  file.version = version;
  uint64_t n_tensors = in_.read<uint64_t>("the tensor count");
  uint64_t n_metadata = in_.read<uint64_t>("the metadata count");
  // Both must fit in what is left; checked here so a huge count fails before any parsing.
  if (n_tensors > in_.remaining() / kMinTensorInfoBytes)
    fail(path_, ": tensor count ", n_tensors, " cannot fit in the ", in_.remaining(), " bytes left in the file");
  read_metadata(file, n_metadata);

  if (const Value* a = file.find("general.alignment")) {
    if (a->type != ValueType::U32)
      fail(path_, ": metadata key 'general.alignment' has type ", value_type_name(a->type), ", expected U32");
    uint64_t alignment = std::get<uint64_t>(a->v);
    if (!std::has_single_bit(alignment))
      fail(path_, ": metadata key 'general.alignment' is ", alignment, ", which is not a power of two");
    file.alignment = static_cast<size_t>(alignment);
  }

  std::vector<uint64_t> offsets;
  read_tensor_infos(file, n_tensors, offsets);

  // The data section starts at the end of the tensor infos, padded to the alignment (< 2^32, no overflow).
  size_t size = in_.size();
  size_t data_start = in_.pos() + (file.alignment - in_.pos() % file.alignment) % file.alignment;
  if (!file.tensors.empty() && data_start > size)
    fail(path_, ": the tensor data section would start at offset ", data_start, ", past the end of the file (", size,
         " bytes)");
  size_t data_size = data_start <= size ? size - data_start : 0;
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    Tensor& t = file.tensors[i];
    uint64_t offset = offsets[i];
    if (offset > data_size || t.nbytes > data_size - offset)
      fail(path_, ": tensor '", printable(t.name), "': data [offset ", offset, ", ", t.nbytes, " bytes] (data section at ", data_start,
           ") runs past the end of the file (", size, " bytes)");
    t.data = base_ + data_start + offset;
    t.owner = owner;
  }
  check_tensor_data_disjoint(file.tensors, path_);
  return file;
}

}  // namespace

File read_memory(const std::byte* data, size_t size, std::shared_ptr<const void> owner, const std::string& path) {
  return Parser(data, size, path).parse(owner);
}

File read_file(const std::string& path) {
  auto mapped = MappedFile::open(path);
  return read_memory(mapped->data(), mapped->size(), mapped, path);
}

}  // namespace baichuan::gguf
