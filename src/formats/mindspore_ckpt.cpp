#include "formats/mindspore_ckpt.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/protobuf_wire.h"

namespace baichuan::formats {

namespace {

using protobuf::Field;
using protobuf::WireReader;
using protobuf::WireType;

// MindSpore tensors have at most 8 dims; a generous cap keeps hostile files from building huge shapes.
constexpr size_t kMaxRank = 32;

struct TypeSpelling {
  std::string_view name;
  DType dtype;
};

// MindSpore's tensor_type strings (tensor_to_ms_type in mindspore/train/serialization.py). Releases
// before 1.6 spelled the unsigned types "Uint8"; both are accepted. UInt16/32/64, Int4 and "str"
// values have no DType here and are reported as unsupported.
constexpr TypeSpelling kTypeSpellings[] = {
    {"Float32", DType::F32}, {"Float16", DType::F16}, {"BFloat16", DType::BF16}, {"Float64", DType::F64},
    {"Int8", DType::I8},     {"Int16", DType::I16},   {"Int32", DType::I32},     {"Int64", DType::I64},
    {"UInt8", DType::U8},    {"Uint8", DType::U8},    {"Bool", DType::Bool},
};

// One Value of the file: a whole parameter, or one part of a parameter split over several Values.
struct Part {
  std::string tag;
  std::string type_name;  // as spelled in the file, for messages
  DType dtype = DType::F32;
  std::vector<int64_t> dims;
  size_t content_begin = 0;
  size_t content_size = 0;
  size_t offset = 0;  // of the Value, for messages
};

std::string shape_string(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

void expect_wire_type(const Field& f, WireType want, const std::string& path, std::string_view field_name) {
  if (f.wire_type != want)
    fail(path, ": offset ", f.offset, ": field '", field_name, "' has wire type ",
         protobuf::wire_type_name(f.wire_type), ", expected ", protobuf::wire_type_name(want));
}

void add_dim(Part& part, uint64_t d, const std::string& path, size_t offset) {
  if (part.dims.size() == kMaxRank) fail(path, ": offset ", offset, ": tensor has more than ", kMaxRank, " dims");
  part.dims.push_back(static_cast<int64_t>(d));  // int64 on the wire: negatives arrive as huge values
}

// Reads a TensorProto into `part`. Called once per occurrence of the field, so repeated occurrences
// merge as protobuf specifies: dims accumulate, later strings replace earlier ones.
void parse_tensor(WireReader in, Part& part, bool& has_type, bool& has_content, const std::string& path) {
  while (!in.at_end()) {
    Field f = in.next_field();
    if (f.number == 1) {  // repeated int64 dims: unpacked varints or one packed run
      if (f.wire_type == WireType::Varint) {
        add_dim(part, f.value, path, f.offset);
      } else {
        expect_wire_type(f, WireType::LengthDelimited, path, "dims");
        WireReader packed = in.sub_reader(f);
        while (!packed.at_end()) add_dim(part, packed.read_varint("packed dims"), path, f.offset);
      }
    } else if (f.number == 2) {
      expect_wire_type(f, WireType::LengthDelimited, path, "tensor_type");
      part.type_name.assign(reinterpret_cast<const char*>(in.data() + f.begin), f.size());
      has_type = true;
    } else if (f.number == 3) {
      expect_wire_type(f, WireType::LengthDelimited, path, "tensor_content");
      part.content_begin = f.begin;
      part.content_size = f.size();
      has_content = true;
    }  // other fields are unknown to this schema version and skipped
  }
}

Part parse_value(WireReader in, size_t offset, const std::string& path) {
  Part part;
  part.offset = offset;
  bool has_tag = false, has_tensor = false, has_type = false, has_content = false;
  while (!in.at_end()) {
    Field f = in.next_field();
    if (f.number == 1) {
      expect_wire_type(f, WireType::LengthDelimited, path, "tag");
      part.tag.assign(reinterpret_cast<const char*>(in.data() + f.begin), f.size());
      has_tag = true;
    } else if (f.number == 2) {
      expect_wire_type(f, WireType::LengthDelimited, path, "tensor");
      parse_tensor(in.sub_reader(f), part, has_type, has_content, path);
      has_tensor = true;
    }  // e.g. field 3 (map tensors of newer releases) is skipped; the tensor check below reports it
  }
  if (!has_tag || part.tag.empty()) fail(path, ": offset ", offset, ": Value has no tag (parameter name)");
  const std::string what = path + ": parameter '" + part.tag + "'";
  if (!has_tensor) fail(what, ": Value at offset ", offset, " has no tensor");
  if (!has_type) fail(what, ": tensor has no tensor_type");
  if (!has_content) fail(what, ": tensor has no tensor_content");
  auto it = std::find_if(std::begin(kTypeSpellings), std::end(kTypeSpellings),
                         [&](const TypeSpelling& s) { return s.name == part.type_name; });
  if (it == std::end(kTypeSpellings)) fail(what, ": unsupported tensor_type '", part.type_name, "'");
  part.dtype = it->dtype;
  return part;
}

// The shape of a parameter stored in one Value. MindSpore writes a 0-d scalar as dims [0] holding
// one element; an empty [0] tensor holds no bytes, so the content length tells them apart.
std::vector<int64_t> single_shape(const Part& p) {
  if (p.dims == std::vector<int64_t>{0} && p.content_size == dtype_info(p.dtype).block_bytes) return {};
  return p.dims;
}

bool part_matches_own_shape(const Part& p, const std::string& what) {
  return p.content_size == bytes_for(p.dtype, checked_numel(p.dims, what), what);
}

// The shape of a parameter split over several Values (each under 512 MiB), whose contents are
// concatenated in order. MindSpore's own writer repeats the full shape in every part and cuts the bytes
// anywhere; a writer may instead give each part its own slice shape, concatenated along axis 0.
std::vector<int64_t> joined_shape(const std::vector<Part>& parts, size_t total, const std::string& what) {
  const Part& first = parts.front();
  const bool same_dims =
      std::all_of(parts.begin(), parts.end(), [&](const Part& p) { return p.dims == first.dims; });
  if (same_dims) {
    size_t full = bytes_for(first.dtype, checked_numel(first.dims, what), what);
    if (total == full) return first.dims;
    if (!std::all_of(parts.begin(), parts.end(), [&](const Part& p) { return part_matches_own_shape(p, what); }))
      fail(what, ": ", total, " content bytes in ", parts.size(), " parts for ", first.type_name, " ",
           shape_string(first.dims), ", expected ", full);
  }
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& p = parts[i];
    if (p.dims.empty()) fail(what, ": part ", i + 1, " of ", parts.size(), " is a scalar; split parts need an axis 0");
    if (!std::equal(p.dims.begin() + 1, p.dims.end(), first.dims.begin() + 1, first.dims.end()))
      fail(what, ": part ", i + 1, " has shape ", shape_string(p.dims), " but part 1 has ", shape_string(first.dims),
           "; only axis 0 may differ");
    size_t expected = bytes_for(p.dtype, checked_numel(p.dims, what), what);
    if (p.content_size != expected)
      fail(what, ": part ", i + 1, " of ", parts.size(), ": ", p.content_size, " content bytes for ", p.type_name, " ",
           shape_string(p.dims), ", expected ", expected);
    if (p.dims[0] > std::numeric_limits<int64_t>::max() - rows) fail(what, ": shape is too large");
    rows += p.dims[0];
  }
  std::vector<int64_t> shape = first.dims;
  shape[0] = rows;
  return shape;
}

// Turns the Values of one parameter into a tensor: a view into the file when stored whole, an owned
// buffer when it has to be stitched together from parts.
Tensor make_tensor(const std::vector<Part>& parts, const std::byte* data, const std::shared_ptr<const void>& owner,
                   const std::string& path) {
  const Part& first = parts.front();
  const std::string what = path + ": parameter '" + first.tag + "'";
  Tensor t;
  t.name = first.tag;
  t.dtype = first.dtype;
  if (parts.size() == 1) {
    t.shape = single_shape(first);
    size_t expected = bytes_for(t.dtype, checked_numel(t.shape, what), what);
    if (first.content_size != expected)
      fail(what, ": ", first.content_size, " content bytes for ", first.type_name, " ", shape_string(t.shape),
           ", expected ", expected);
    t.data = data + first.content_begin;
    t.nbytes = expected;
    t.owner = owner;
    return t;
  }
  for (size_t i = 1; i < parts.size(); ++i)
    if (parts[i].dtype != first.dtype)
      fail(what, ": part ", i + 1, " is ", parts[i].type_name, " but part 1 is ", first.type_name);
  // The parts are disjoint ranges of the file, so their sum cannot overflow and is bounded by its size.
  size_t total = 0;
  for (const Part& p : parts) total += p.content_size;
  t.shape = joined_shape(parts, total, what);
  auto buffer = make_buffer(total);
  size_t at = 0;
  for (const Part& p : parts) {
    if (p.content_size) std::memcpy(buffer->data() + at, data + p.content_begin, p.content_size);
    at += p.content_size;
  }
  t.data = buffer->data();
  t.nbytes = total;
  t.owner = buffer;
  return t;
}

}  // namespace

// Parses a checkpoint image held in memory; tensors stored whole point into `data`, kept alive by
// `owner`. Shared by read_mindspore_ckpt and the fuzz target.
std::vector<Tensor> parse_mindspore_ckpt(const std::byte* data, size_t size, const std::shared_ptr<const void>& owner,
                                         const std::string& path) {
  std::vector<Tensor> tensors;
  std::unordered_set<std::string> finished;
  std::vector<Part> group;  // consecutive Values with one tag
  auto finish_group = [&] {
    if (group.empty()) return;
    tensors.push_back(make_tensor(group, data, owner, path));
    finished.insert(group.front().tag);
    group.clear();
  };
  // Concatenated Checkpoint messages read as one message whose repeated field 1 holds every Value.
  WireReader in(data, 0, size, path);
  while (!in.at_end()) {
    Field f = in.next_field();
    if (f.number != 1) continue;  // fields of newer releases (e.g. checksums) are not needed to read tensors
    expect_wire_type(f, WireType::LengthDelimited, path, "value");
    Part part = parse_value(in.sub_reader(f), f.offset, path);
    if (!group.empty() && group.front().tag != part.tag) finish_group();
    if (group.empty() && finished.count(part.tag))
      fail(path, ": parameter '", part.tag, "' appears again at offset ", f.offset, " after other parameters");
    group.push_back(std::move(part));
  }
  finish_group();
  if (tensors.empty()) fail(path, ": no parameters (empty checkpoint)");
  return tensors;
}

std::vector<Tensor> read_mindspore_ckpt(const std::string& path) {
  auto file = MappedFile::open(path);
  return parse_mindspore_ckpt(file->data(), file->size(), file, path);
}

}  // namespace baichuan::formats
