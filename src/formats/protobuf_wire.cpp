#include "formats/protobuf_wire.h"

#include "core/error.h"

namespace baichuan::formats::protobuf {

std::string_view wire_type_name(WireType t) {
  switch (t) {
    case WireType::Varint: return "varint";
    case WireType::Fixed64: return "fixed64";
    case WireType::LengthDelimited: return "length-delimited";
    case WireType::Fixed32: return "fixed32";
  }
  return "?";
}

WireReader::WireReader(const std::byte* data, size_t begin, size_t end, const std::string& what)
    : data_(data), pos_(begin), end_(end), what_(what) {}

uint64_t WireReader::read_varint(std::string_view reading) {
  const size_t start = pos_;
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (pos_ == end_) fail(what_, ": offset ", start, ": truncated varint for ", reading);
    auto b = static_cast<uint8_t>(data_[pos_++]);
    // The 10th byte may only hold bit 63; more (or an 11th byte) does not fit in 64 bits.
    if (shift == 63 && b > 1) fail(what_, ": offset ", start, ": varint for ", reading, " overflows 64 bits");
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
}

Field WireReader::next_field() {
  Field f;
  f.offset = pos_;
  uint64_t tag = read_varint("a field tag");
  uint64_t number = tag >> 3;
  if (number == 0 || number > 0x1fffffff) fail(what_, ": offset ", f.offset, ": invalid field number ", number);
  f.number = static_cast<uint32_t>(number);
  auto type = static_cast<uint32_t>(tag & 7);
  switch (type) {
    case 0:
      f.wire_type = WireType::Varint;
      f.value = read_varint("a varint field");
      break;
    case 1:
    case 5: {
      f.wire_type = type == 1 ? WireType::Fixed64 : WireType::Fixed32;
      size_t n = type == 1 ? 8 : 4;
      if (end_ - pos_ < n)
        fail(what_, ": offset ", pos_, ": truncated ", wire_type_name(f.wire_type), " field ", f.number, ": need ",
             n, " bytes, only ", end_ - pos_, " left");
      for (size_t i = 0; i < n; ++i) f.value |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
      pos_ += n;
      break;
    }
    case 2: {
      f.wire_type = WireType::LengthDelimited;
      uint64_t len = read_varint("a field length");
      if (len > end_ - pos_)
        fail(what_, ": offset ", f.offset, ": field ", f.number, " claims ", len, " bytes, only ", end_ - pos_,
             " left");
      f.begin = pos_;
      f.end = pos_ + static_cast<size_t>(len);
      pos_ = f.end;
      break;
    }
    default:  // 3/4 are deprecated groups, 6/7 do not exist
      fail(what_, ": offset ", f.offset, ": field ", f.number, " has unsupported wire type ", type);
  }
  return f;
}

WireReader WireReader::sub_reader(const Field& f) const {
  if (f.wire_type != WireType::LengthDelimited)
    fail(what_, ": offset ", f.offset, ": field ", f.number, " is not length-delimited");
  return WireReader(data_, f.begin, f.end, what_);
}

}  // namespace baichuan::formats::protobuf
