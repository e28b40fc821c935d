// libFuzzer target for tokenizer.model: the project's own SentencePiece ModelProto reader, then the
// tokenizer built on it (SentencePiece loads the same bytes). Properties: a proto that parses
// survives serialize -> parse unchanged; a tokenizer that loads encodes text into ids inside its
// vocabulary, and decodes them.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "fuzz_support.h"
#include "tokenizer/sentencepiece_model_proto.h"
#include "tokenizer/tokenizer.h"

namespace fuzz_tokenizer_model {

bool same_float(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void check_round_trip(const baichuan::SpmModel& a) {
  using fuzz_support::property_failed;
  baichuan::SpmModel b;
  try {
    b = baichuan::parse_model_proto(baichuan::serialize_model_proto(a), "round trip");
  } catch (const baichuan::Error& e) {
    property_failed("a parsed model does not parse back after serializing: ", e.what());
  }
  if (a.pieces.size() != b.pieces.size()) property_failed("round trip changed the piece count");
  for (size_t i = 0; i < a.pieces.size(); ++i)
    if (a.pieces[i].piece != b.pieces[i].piece || !same_float(a.pieces[i].score, b.pieces[i].score) ||
        a.pieces[i].type != b.pieces[i].type)
      property_failed("round trip changed piece ", i);
  const auto &t = a.trainer, &u = b.trainer;
  if (t.model_type != u.model_type || t.vocab_size != u.vocab_size ||
      t.max_sentencepiece_length != u.max_sentencepiece_length || t.split_digits != u.split_digits ||
      t.allow_whitespace_only_pieces != u.allow_whitespace_only_pieces || t.byte_fallback != u.byte_fallback ||
      t.unk_id != u.unk_id || t.bos_id != u.bos_id || t.eos_id != u.eos_id || t.pad_id != u.pad_id)
    property_failed("round trip changed the trainer spec");
  const auto &n = a.normalizer, &o = b.normalizer;
  if (n.name != o.name || n.precompiled_charsmap != o.precompiled_charsmap || n.add_dummy_prefix != o.add_dummy_prefix ||
      n.remove_extra_whitespaces != o.remove_extra_whitespaces || n.escape_whitespaces != o.escape_whitespaces)
    property_failed("round trip changed the normalizer spec");
}

}  // namespace fuzz_tokenizer_model

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  const std::string bytes(fuzz_support::as_text(data, size));
  try {
    fuzz_tokenizer_model::check_round_trip(parse_model_proto(bytes, "fuzz.model"));
  } catch (const Error&) {
    return 0;
  }
  try {
    Tokenizer tokenizer = Tokenizer::from_model_bytes(bytes, "fuzz.model");
    auto ids = tokenizer.encode("Hello, world! 你好，世界 123 <s></s>\n\t  end");
    for (int32_t id : ids)
      if (id < 0 || id >= tokenizer.vocab_size())
        fuzz_support::property_failed("encode gave id ", id, " outside a vocabulary of ", tokenizer.vocab_size());
    (void)tokenizer.decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
