#include "tokenizer/sentencepiece_model_proto.h"

#include <cstring>

#include "core/error.h"
#include "formats/protobuf_wire.h"

namespace baichuan {
namespace {

namespace pb = formats::protobuf;
using pb::WireType;

// `f` after checking that its wire type is the schema's, `name`'s.
const pb::Field& expect(const pb::Field& f, WireType want, const char* name, const std::string& what) {
  if (f.wire_type != want)
    fail(what, ": field '", name, "' has wire type ", pb::wire_type_name(f.wire_type), ", expected ",
         pb::wire_type_name(want), " (offset ", f.offset, ")");
  return f;
}

// Field values after expect(): int32 fields are sign-extended to 64 bits on the wire (so -1 takes 10 bytes).
int32_t read_int32(const pb::Field& f, const char* name, const std::string& what) {
  return static_cast<int32_t>(static_cast<int64_t>(expect(f, WireType::Varint, name, what).value));
}

bool read_bool(const pb::Field& f, const char* name, const std::string& what) {
  return expect(f, WireType::Varint, name, what).value != 0;
}

float read_float(const pb::Field& f, const char* name, const std::string& what) {
  const auto bits = static_cast<uint32_t>(expect(f, WireType::Fixed32, name, what).value);
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

std::string read_bytes(const pb::WireReader& r, const pb::Field& f, const char* name, const std::string& what) {
  expect(f, WireType::LengthDelimited, name, what);
  return std::string(reinterpret_cast<const char*>(r.data()) + f.begin, f.size());
}

SpmPiece parse_piece(pb::WireReader r, const std::string& what) {
  SpmPiece p;
  while (!r.at_end()) {
    const pb::Field f = r.next_field();  // unknown fields are skipped
    if (f.number == 1) p.piece = read_bytes(r, f, "SentencePiece.piece", what);
    if (f.number == 2) p.score = read_float(f, "SentencePiece.score", what);
    if (f.number == 3) p.type = read_int32(f, "SentencePiece.type", what);
  }
  return p;
}

SpmTrainerSpec parse_trainer(pb::WireReader r, const std::string& what) {
  SpmTrainerSpec t;
  while (!r.at_end()) {
    const pb::Field f = r.next_field();
    switch (f.number) {
      case 3: t.model_type = read_int32(f, "TrainerSpec.model_type", what); break;
      case 4: t.vocab_size = read_int32(f, "TrainerSpec.vocab_size", what); break;
      case 20: t.max_sentencepiece_length = read_int32(f, "TrainerSpec.max_sentencepiece_length", what); break;
      case 25: t.split_digits = read_bool(f, "TrainerSpec.split_digits", what); break;
      case 26: t.allow_whitespace_only_pieces = read_bool(f, "TrainerSpec.allow_whitespace_only_pieces", what); break;
      case 35: t.byte_fallback = read_bool(f, "TrainerSpec.byte_fallback", what); break;
      case 40: t.unk_id = read_int32(f, "TrainerSpec.unk_id", what); break;
      case 41: t.bos_id = read_int32(f, "TrainerSpec.bos_id", what); break;
      case 42: t.eos_id = read_int32(f, "TrainerSpec.eos_id", what); break;
      case 43: t.pad_id = read_int32(f, "TrainerSpec.pad_id", what); break;
      default: break;
    }
  }
  return t;
}

SpmNormalizerSpec parse_normalizer(pb::WireReader r, const std::string& what) {
  SpmNormalizerSpec n;
  while (!r.at_end()) {
    const pb::Field f = r.next_field();
    switch (f.number) {
      case 1: n.name = read_bytes(r, f, "NormalizerSpec.name", what); break;
      case 2: n.precompiled_charsmap = read_bytes(r, f, "NormalizerSpec.precompiled_charsmap", what); break;
      case 3: n.add_dummy_prefix = read_bool(f, "NormalizerSpec.add_dummy_prefix", what); break;
      case 4: n.remove_extra_whitespaces = read_bool(f, "NormalizerSpec.remove_extra_whitespaces", what); break;
      case 5: n.escape_whitespaces = read_bool(f, "NormalizerSpec.escape_whitespaces", what); break;
      default: break;
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
  void key(uint32_t field, WireType wire_type) {
    varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
  }
  void int32_field(uint32_t field, int32_t v) {
    key(field, WireType::Varint);
    varint(static_cast<uint64_t>(static_cast<int64_t>(v)));  // sign-extended, as protobuf does for int32
  }
  void bool_field(uint32_t field, bool v) {
    key(field, WireType::Varint);
    varint(v ? 1 : 0);
  }
  void bytes_field(uint32_t field, std::string_view s) {
    key(field, WireType::LengthDelimited);
    varint(s.size());
    out_.append(s);
  }
  void float_field(uint32_t field, float f) {
    key(field, WireType::Fixed32);
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
  pb::WireReader r(reinterpret_cast<const std::byte*>(bytes.data()), 0, bytes.size(), what);
  SpmModel m;
  while (!r.at_end()) {
    const pb::Field f = r.next_field();
    auto message = [&](const char* name) { return r.sub_reader(expect(f, WireType::LengthDelimited, name, what)); };
    if (f.number == 1) m.pieces.push_back(parse_piece(message("ModelProto.pieces"), what));
    if (f.number == 2) m.trainer = parse_trainer(message("ModelProto.trainer_spec"), what);
    if (f.number == 3) m.normalizer = parse_normalizer(message("ModelProto.normalizer_spec"), what);
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
