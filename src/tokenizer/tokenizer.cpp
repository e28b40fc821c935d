#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/sentencepiece_model_proto.h"

namespace baichuan {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string model_bytes;
  std::vector<SpmPiece> pieces;  // parsed from model_bytes: the library does not expose user-defined types
  // The literal strings split out of the text before SentencePiece, with their ids: the special
  // tokens of the Hugging Face tokenizer (<unk>, <s>, </s>).
  std::vector<std::pair<std::string, int32_t>> special_tokens;
  int32_t control_id = -1;  // any control piece (decode renders <unk> as one), -1 if there is none
  std::string what;

  const SpmPiece& entry(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= pieces.size())
      fail(what, ": token id ", id, " is out of range [0, ", pieces.size(), ")");
    return pieces[static_cast<size_t>(id)];
  }
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) { return from_model_bytes(read_text_file(path), path); }

Tokenizer Tokenizer::from_model_bytes(std::string serialized_model_proto, const std::string& what) {
  Tokenizer t;
  Impl& m = *t.impl_;
  m.what = what;
  m.pieces = parse_model_proto(serialized_model_proto, what).pieces;
  if (m.pieces.empty()) fail(what, ": the SentencePiece model has no pieces");
  // SentencePiece (Debian's 0.1.x) keys its trie by C string: a piece that is empty or starts with a
  // NUL byte throws from inside the library (terminating the program), one with a NUL further on is
  // cut short there. Refuse both here (found by fuzz/fuzz_tokenizer_model).
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    if (m.pieces[i].piece.empty()) fail(what, ": piece ", i, " of the SentencePiece model is empty");
    if (m.pieces[i].piece.find('\0') != std::string::npos)
      fail(what, ": piece ", i, " of the SentencePiece model holds a NUL byte");
  }
  auto status = m.sp.LoadFromSerializedProto(serialized_model_proto);
  if (!status.ok()) fail(what, ": not a usable SentencePiece model: ", status.ToString());
  if (static_cast<size_t>(m.sp.GetPieceSize()) != m.pieces.size())
    fail(what, ": SentencePiece reports ", m.sp.GetPieceSize(), " pieces, the model proto has ", m.pieces.size());
  m.model_bytes = std::move(serialized_model_proto);

  // BaichuanTokenizer's special tokens are unk "<unk>", bos "<s>", eos "</s>" (pad is "<unk>" again);
  // they are the model's own pieces for those ids.
  for (int id : {m.sp.unk_id(), m.sp.bos_id(), m.sp.eos_id()})
    if (id >= 0 && !m.pieces[static_cast<size_t>(id)].piece.empty())
      m.special_tokens.emplace_back(m.pieces[static_cast<size_t>(id)].piece, id);
  for (size_t i = 0; i < m.pieces.size() && m.control_id < 0; ++i)
    if (m.pieces[i].type == static_cast<int32_t>(PieceType::Control)) m.control_id = static_cast<int32_t>(i);
  return t;
}

Tokenizer Tokenizer::from_vocab(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                                const std::vector<int32_t>& types, const std::string& what) {
  if (pieces.empty()) fail(what, ": the vocabulary is empty");
  if (scores.size() != pieces.size() || types.size() != pieces.size())
    fail(what, ": ", pieces.size(), " tokens but ", scores.size(), " scores and ", types.size(), " token types");

  SpmModel model;
  model.pieces.reserve(pieces.size());
  int32_t unk_id = -1, bos_id = -1, eos_id = -1;
  bool has_byte_pieces = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    int32_t type = types[i];
    if (type < static_cast<int32_t>(PieceType::Normal) || type > static_cast<int32_t>(PieceType::Byte))
      fail(what, ": token ", i, " ('", pieces[i], "') has type ", type, ", expected 1..6");
    if (type == static_cast<int32_t>(PieceType::Unknown)) {
      if (unk_id >= 0) fail(what, ": tokens ", unk_id, " and ", i, " both have the unknown type (2)");
      unk_id = static_cast<int32_t>(i);
    }
    if (type == static_cast<int32_t>(PieceType::Control) && pieces[i] == "<s>") bos_id = static_cast<int32_t>(i);
    if (type == static_cast<int32_t>(PieceType::Control) && pieces[i] == "</s>") eos_id = static_cast<int32_t>(i);
    if (type == static_cast<int32_t>(PieceType::Byte)) has_byte_pieces = true;
    model.pieces.push_back({pieces[i], scores[i], type});
  }
  if (unk_id < 0) fail(what, ": no token has the unknown type (2); SentencePiece needs one");

  // Baichuan 2's tokenizer.model, decoded field by field (the Tokenizer test checks these against the
  // real file), has: trainer_spec {model_type: BPE (2), max_sentencepiece_length: 32, split_digits: true,
  // allow_whitespace_only_pieces: true, byte_fallback: true, unk/bos/eos/pad ids left at the defaults
  // 0/1/2/-1}, normalizer_spec {name: "identity", precompiled_charsmap: "" (no NFKC table),
  // add_dummy_prefix: false, remove_extra_whitespaces: false, escape_whitespaces: true (the default)}.
  // Only model_type, byte_fallback, the special ids and the normalizer change what encode/decode do;
  // the other trainer fields are copied so the rebuilt spec says the same thing. The real file's
  // training-run fields (input size, threads, user_defined_symbols list, ...) are left out: the
  // piece types already mark user-defined pieces. vocab_size is the real count here (the original
  // says 99968, the size before the user-defined and byte pieces were added; it is not used).
  SpmTrainerSpec& t = model.trainer;
  t.model_type = 2;  // BPE: GGUF vocabularies of Baichuan 2 are SentencePiece BPE with merge-rank scores
  t.vocab_size = static_cast<int32_t>(pieces.size());
  t.max_sentencepiece_length = 32;
  t.split_digits = true;
  t.allow_whitespace_only_pieces = true;
  t.byte_fallback = has_byte_pieces;  // SentencePiece rejects byte pieces without byte_fallback
  t.unk_id = unk_id;
  t.bos_id = bos_id;
  t.eos_id = eos_id;
  t.pad_id = -1;  // the model has no pad piece; Tokenizer::pad_id() answers <unk> as the HF config does
  SpmNormalizerSpec& n = model.normalizer;
  n.name = "identity";
  n.precompiled_charsmap.clear();
  n.add_dummy_prefix = false;
  n.remove_extra_whitespaces = false;
  n.escape_whitespaces = true;
  return from_model_bytes(serialize_model_proto(model), what);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  std::vector<int> ids;
  auto encode_chunk = [&](std::string_view chunk) {
    if (chunk.empty()) return;
    ids.clear();
    auto status = m.sp.Encode(chunk, &ids);
    if (!status.ok()) fail(m.what, ": SentencePiece encode failed: ", status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  };
  // As the HF slow tokenizer does: find the leftmost (then longest) special-token string, encode the
  // text before it with SentencePiece, emit the special id, continue after it. The special tokens
  // are AddedToken(lstrip=False, rstrip=False) in BaichuanTokenizer, so no surrounding whitespace is
  // stripped; `single_word` and `normalized` have no effect in the transformers versions Baichuan 2
  // supports (<= 4.33), whose slow tokenizer ignores them.
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    int32_t best_id = -1;
    for (const auto& [literal, id] : m.special_tokens) {
      size_t at = text.find(literal, pos);
      if (at == std::string_view::npos) continue;
      if (at < best || (at == best && literal.size() > best_len)) {
        best = at;
        best_len = literal.size();
        best_id = id;
      }
    }
    if (best == std::string_view::npos) break;
    encode_chunk(text.substr(pos, best - pos));
    out.push_back(best_id);
    pos = best + best_len;
  }
  if (pos < text.size()) encode_chunk(text.substr(pos));
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    // SentencePiece renders control pieces as "" but <unk> as " ⁇ "; generated text wants "" for every
    // special token, so <unk> is decoded as a control piece: "" that also ends a run of byte pieces
    // (dropping it instead would join the bytes around it into one character).
    if (m.entry(id).type == static_cast<int32_t>(PieceType::Unknown)) {
      if (m.control_id >= 0) kept.push_back(m.control_id);
      continue;
    }
    kept.push_back(id);
  }
  std::string text;
  auto status = m.sp.Decode(kept, &text);
  if (!status.ok()) fail(m.what, ": SentencePiece decode failed: ", status.ToString());
  return text;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->pieces.size()); }
int32_t Tokenizer::bos_id() const { return impl_->sp.bos_id(); }
int32_t Tokenizer::eos_id() const { return impl_->sp.eos_id(); }
int32_t Tokenizer::unk_id() const { return impl_->sp.unk_id(); }
// Baichuan 2's tokenizer.model defines no pad piece; its HF config uses <unk> as the pad token.
int32_t Tokenizer::pad_id() const { return impl_->sp.pad_id() >= 0 ? impl_->sp.pad_id() : impl_->sp.unk_id(); }
const std::string& Tokenizer::piece(int32_t id) const { return impl_->entry(id).piece; }
float Tokenizer::score(int32_t id) const { return impl_->entry(id).score; }
PieceType Tokenizer::type(int32_t id) const { return static_cast<PieceType>(impl_->entry(id).type); }
const std::string& Tokenizer::model_bytes() const { return impl_->model_bytes; }

}  // namespace baichuan
