#include "tokenizer/sentencepiece_model_proto.h"

#include <cstring>

#include "core/error.h"

namespace baichuan {
namespace {

// Protobuf wire types.
constexpr int kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

// Reads one message's fields; bounds-checked, errors name the absolute offset.
class WireReader {
 public:
  WireReader(std::string_view bytes, size_t base, const std::string& what)
      : bytes_(bytes), base_(base), what_(what) {}

  bool done() const { return pos_ >= bytes_.size(); }
  size_t offset() const { return base_ + pos_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) fail(what_, ": truncated varint at offset ", offset());
      auto b = static_cast<uint8_t>(bytes_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    fail(what_, ": varint longer than 10 bytes at offset ", offset());
  }

  // Reads a field key; returns the field number and sets `wire_type`.
  uint32_t key(int& wire_type) {
    uint64_t k = varint();
    wire_type = static_cast<int>(k & 7);
    return static_cast<uint32_t>(k >> 3);
  }

  std::string_view bytes(size_t& start) {
    uint64_t n = varint();
    if (n > bytes_.size() - pos_)
      fail(what_, ": length-delimited field of ", n, " bytes at offset ", offset(), " runs past the end");
    start = base_ + pos_;
    std::string_view s = bytes_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

  float fixed32_float() {
    if (bytes_.size() - pos_ < 4) fail(what_, ": truncated fixed32 at offset ", offset());
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[pos_ + i])) << (8 * i);
    pos_ += 4;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }

  void skip(int wire_type) {
    size_t start = 0;
    switch (wire_type) {
      case kVarint: varint(); return;
      case kLengthDelimited: bytes(start); return;
      case kFixed64: advance(8); return;
      case kFixed32: advance(4); return;
      default: fail(what_, ": unsupported protobuf wire type ", wire_type, " at offset ", offset());
    }
  }

  // int32 fields are sign-extended to 64 bits on the wire (so -1 takes 10 bytes).
  int32_t int32() { return static_cast<int32_t>(static_cast<int64_t>(varint())); }
  bool boolean() { return varint() != 0; }

  void expect(int wire_type, int want, const char* field) {
    if (wire_type != want)
      fail(what_, ": field '", field, "' has wire type ", wire_type, ", expected ", want, " (offset ", offset(), ")");
  }

 private:
  void advance(size_t n) {
    if (bytes_.size() - pos_ < n) fail(what_, ": truncated field at offset ", offset());
    pos_ += n;
  }

  std::string_view bytes_;
  size_t base_;
  size_t pos_ = 0;
  const std::string& what_;
};

SpmPiece parse_piece(std::string_view bytes, size_t base, const std::string& what) {
  WireReader r(bytes, base, what);
  SpmPiece p;
  while (!r.done()) {
    int wt;
    uint32_t field = r.key(wt);
    size_t start;
    if (field == 1) {
      r.expect(wt, kLengthDelimited, "SentencePiece.piece");
      p.piece = std::string(r.bytes(start));
    } else if (field == 2) {
      r.expect(wt, kFixed32, "SentencePiece.score");
      p.score = r.fixed32_float();
    } else if (field == 3) {
      r.expect(wt, kVarint, "SentencePiece.type");
      p.type = r.int32();
    } else {
      r.skip(wt);
    }
  }
  return p;
}

SpmTrainerSpec parse_trainer(std::string_view bytes, size_t base, const std::string& what) {
  WireReader r(bytes, base, what);
  SpmTrainerSpec t;
  while (!r.done()) {
    int wt;
    uint32_t field = r.key(wt);
    switch (field) {
      case 3: r.expect(wt, kVarint, "TrainerSpec.model_type"); t.model_type = r.int32(); break;
      case 4: r.expect(wt, kVarint, "TrainerSpec.vocab_size"); t.vocab_size = r.int32(); break;
      case 20:
        r.expect(wt, kVarint, "TrainerSpec.max_sentencepiece_length");
        t.max_sentencepiece_length = r.int32();
        break;
      case 25: r.expect(wt, kVarint, "TrainerSpec.split_digits"); t.split_digits = r.boolean(); break;
      case 26:
        r.expect(wt, kVarint, "TrainerSpec.allow_whitespace_only_pieces");
        t.allow_whitespace_only_pieces = r.boolean();
        break;
      case 35: r.expect(wt, kVarint, "TrainerSpec.byte_fallback"); t.byte_fallback = r.boolean(); break;
      case 40: r.expect(wt, kVarint, "TrainerSpec.unk_id"); t.unk_id = r.int32(); break;
      case 41: r.expect(wt, kVarint, "TrainerSpec.bos_id"); t.bos_id = r.int32(); break;
      case 42: r.expect(wt, kVarint, "TrainerSpec.eos_id"); t.eos_id = r.int32(); break;
      case 43: r.expect(wt, kVarint, "TrainerSpec.pad_id"); t.pad_id = r.int32(); break;
      default: r.skip(wt);
    }
  }
  return t;
}

SpmNormalizerSpec parse_normalizer(std::string_view bytes, size_t base, const std::string& what) {
  WireReader r(bytes, base, what);
  SpmNormalizerSpec n;
  while (!r.done()) {
    int wt;
    uint32_t field = r.key(wt);
    size_t start;
    switch (field) {
      case 1: r.expect(wt, kLengthDelimited, "NormalizerSpec.name"); n.name = std::string(r.bytes(start)); break;
      case 2:
        r.expect(wt, kLengthDelimited, "NormalizerSpec.precompiled_charsmap");
        n.precompiled_charsmap = std::string(r.bytes(start));
        break;
      case 3: r.expect(wt, kVarint, "NormalizerSpec.add_dummy_prefix"); n.add_dummy_prefix = r.boolean(); break;
      case 4:
        r.expect(wt, kVarint, "NormalizerSpec.remove_extra_whitespaces");
        n.remove_extra_whitespaces = r.boolean();
        break;
      case 5: r.expect(wt, kVarint, "NormalizerSpec.escape_whitespaces"); n.escape_whitespaces = r.boolean(); break;
      default: r.skip(wt);
    }
  }
  return n;
}

// Appends fields in wire format.
class WireWriter {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void key(uint32_t field, int wire_type) {
    varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
  }
  void int32_field(uint32_t field, int32_t v) {
    key(field, kVarint);
    varint(static_cast<uint64_t>(static_cast<int64_t>(v)));  // sign-extended, as protobuf does for int32
  }
  void bool_field(uint32_t field, bool v) {
    key(field, kVarint);
    varint(v ? 1 : 0);
  }
  void bytes_field(uint32_t field, std::string_view s) {
    key(field, kLengthDelimited);
    varint(s.size());
    out_.append(s);
  }
  void float_field(uint32_t field, float f) {
    key(field, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

}  // namespace

SpmModel parse_model_proto(std::string_view bytes, const std::string& what) {
  WireReader r(bytes, 0, what);
  SpmModel m;
  while (!r.done()) {
    int wt;
    uint32_t field = r.key(wt);
    size_t start = 0;
    if (field == 1) {
      r.expect(wt, kLengthDelimited, "ModelProto.pieces");
      std::string_view sub = r.bytes(start);
      m.pieces.push_back(parse_piece(sub, start, what));
    } else if (field == 2) {
      r.expect(wt, kLengthDelimited, "ModelProto.trainer_spec");
      std::string_view sub = r.bytes(start);
      m.trainer = parse_trainer(sub, start, what);
    } else if (field == 3) {
      r.expect(wt, kLengthDelimited, "ModelProto.normalizer_spec");
      std::string_view sub = r.bytes(start);
      m.normalizer = parse_normalizer(sub, start, what);
    } else {
      r.skip(wt);
    }
  }
  return m;
}

std::string serialize_model_proto(const SpmModel& model) {
  WireWriter out;
  WireWriter sub;
  for (const SpmPiece& p : model.pieces) {
    sub.str().clear();
    sub.bytes_field(1, p.piece);
    sub.float_field(2, p.score);
    sub.int32_field(3, p.type);
    out.bytes_field(1, sub.str());
  }

  const SpmTrainerSpec& t = model.trainer;
  sub.str().clear();
  sub.int32_field(3, t.model_type);
  sub.int32_field(4, t.vocab_size);
  sub.int32_field(20, t.max_sentencepiece_length);
  sub.bool_field(25, t.split_digits);
  sub.bool_field(26, t.allow_whitespace_only_pieces);
  sub.bool_field(35, t.byte_fallback);
  sub.int32_field(40, t.unk_id);
  sub.int32_field(41, t.bos_id);
  sub.int32_field(42, t.eos_id);
  sub.int32_field(43, t.pad_id);
  out.bytes_field(2, sub.str());

  const SpmNormalizerSpec& n = model.normalizer;
  sub.str().clear();
  sub.bytes_field(1, n.name);
  sub.bytes_field(2, n.precompiled_charsmap);
  sub.bool_field(3, n.add_dummy_prefix);
  sub.bool_field(4, n.remove_extra_whitespaces);
  sub.bool_field(5, n.escape_whitespaces);
  out.bytes_field(3, sub.str());
  return std::move(out.str());
}

}  // namespace baichuan
