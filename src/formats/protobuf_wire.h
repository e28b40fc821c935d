// A tiny bounds-checked reader of the protobuf wire format over an in-memory file image, for the
// readers of MindSpore checkpoints (it never copies tensor payloads) and SentencePiece models. It knows
// only the encoding: varints, field tags, wire types 0 (varint), 1 (fixed64), 2 (length-delimited) and
// 5 (fixed32); the caller knows the schema. Every read checks the bytes left in the current message
// first and throws an Error naming the file and absolute offset; no read allocates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace baichuan::formats::protobuf {

enum class WireType : uint8_t { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 };

std::string_view wire_type_name(WireType t);

struct Field {
  uint32_t number = 0;
  WireType wire_type = WireType::Varint;
  size_t offset = 0;     // absolute offset of the field's tag, for error messages
  uint64_t value = 0;    // the number, for varint / fixed32 / fixed64 fields
  size_t begin = 0;      // for length-delimited fields: absolute byte range [begin, end) of the payload
  size_t end = 0;
  size_t size() const { return end - begin; }
};

// Reads the fields of one message occupying [begin, end) of `data`. `what` (usually the file path)
// starts every error message and must outlive the reader.
class WireReader {
 public:
  WireReader(const std::byte* data, size_t begin, size_t end, const std::string& what);

  bool at_end() const { return pos_ == end_; }
  size_t pos() const { return pos_; }

  // Reads the next field's tag and value; length-delimited payloads are returned as ranges, not read.
  Field next_field();

  // Reads one varint (at most 10 bytes, no bits beyond 64), e.g. inside a packed repeated field.
  uint64_t read_varint(std::string_view reading);

  // A reader over a length-delimited field's payload, for nested messages and packed fields.
  WireReader sub_reader(const Field& f) const;

  const std::byte* data() const { return data_; }

 private:
  const std::byte* data_;
  size_t pos_, end_;
  const std::string& what_;
};

}  // namespace baichuan::formats::protobuf
