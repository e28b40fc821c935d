#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <unordered_set>

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

  // The reserved pieces ("<reserved_106>", ...) that EncodeOptions::special_tokens = false keeps as
  // text: their strings (views into `pieces`), lengths (longest first) and first bytes.
  std::unordered_set<std::string_view> reserved;
  std::vector<size_t> reserved_lengths;
  std::array<bool, 256> reserved_first{};
  // Bytes c before which the text can be cut into chunks that SentencePiece encodes separately with
  // the same result: no piece holds another character followed by c, so no merge crosses the cut
  // (Baichuan 2: space, newline and tab). All false when the normalizer could change the text.
  std::array<bool, 256> cut_before{};
  size_t max_bytes_per_token = 0;

  const SpmPiece& entry(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= pieces.size())
      fail(what, ": token id ", id, " is out of range [0, ", pieces.size(), ")");
    return pieces[static_cast<size_t>(id)];
  }

  void index_pieces(const SpmNormalizerSpec& normalizer, const SpmTrainerSpec& trainer);
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out, size_t max_tokens) const;

  struct Match {
    size_t at = std::string_view::npos, length = 0;
    int32_t id = -1;
  };
  Match next_special(std::string_view text, size_t pos, std::vector<size_t>& found) const;
  Match next_reserved(std::string_view text, size_t pos) const;
};

namespace {

constexpr std::string_view kSpaceMark = "\xe2\x96\x81";  // U+2581, SentencePiece's escaped space
constexpr size_t kChunkBytes = 4096;  // text per SentencePiece call when a cap may end encoding early

// Whether `piece` holds `mark` right after something other than `mark`.
bool joins_before(std::string_view piece, std::string_view mark) {
  for (size_t at = piece.find(mark, 1); at != std::string_view::npos; at = piece.find(mark, at + 1))
    if (at < mark.size() || piece.substr(at - mark.size(), mark.size()) != mark) return true;
  return false;
}

}  // namespace

void Tokenizer::Impl::index_pieces(const SpmNormalizerSpec& normalizer, const SpmTrainerSpec& trainer) {
  const bool escapes = normalizer.escape_whitespaces;
  for (const SpmPiece& p : pieces)
    if (p.type == static_cast<int32_t>(PieceType::UserDefined) && p.piece.starts_with("<reserved_") &&
        p.piece.ends_with(">"))
      reserved.insert(p.piece);
  for (std::string_view r : reserved) {
    reserved_first[static_cast<unsigned char>(r[0])] = true;
    if (std::find(reserved_lengths.begin(), reserved_lengths.end(), r.size()) == reserved_lengths.end())
      reserved_lengths.push_back(r.size());
  }
  std::sort(reserved_lengths.rbegin(), reserved_lengths.rend());

  // Text reaches the model unchanged only with no normalization table and no whitespace folding.
  const bool verbatim = normalizer.precompiled_charsmap.empty() && !normalizer.remove_extra_whitespaces;
  if (verbatim && !normalizer.add_dummy_prefix) {  // a dummy prefix would start every chunk
    for (char c : {' ', '\n', '\t'}) {
      const std::string mark = c == ' ' && escapes ? std::string(kSpaceMark) : std::string(1, c);
      bool joins = false;
      for (const SpmPiece& p : pieces) joins = joins || joins_before(p.piece, mark);
      cut_before[static_cast<unsigned char>(c)] = !joins;
    }
  }
  // Byte fallback makes every token stand for at least one byte and at most its piece's bytes.
  if (verbatim && trainer.byte_fallback) {
    size_t most = 0;
    for (const SpmPiece& p : pieces) {
      if (p.type == static_cast<int32_t>(PieceType::Byte)) continue;
      size_t bytes = p.piece.size();
      if (escapes)
        for (size_t at = p.piece.find(kSpaceMark); at != std::string::npos; at = p.piece.find(kSpaceMark, at + 1))
          bytes -= kSpaceMark.size() - 1;
      most = std::max(most, bytes);
    }
    max_bytes_per_token = std::max<size_t>(most, 1);
  }
}

void Tokenizer::Impl::encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
  if (chunk.empty()) return;
  std::vector<int> ids;
  auto status = sp.Encode(chunk, &ids);
  if (!status.ok()) fail(what, ": SentencePiece encode failed: ", status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

// SentencePiece over `text` in chunks cut where no merge can cross, stopping once out holds more
// than max_tokens ids. Without a cap the text goes in one call (the same ids, fewer calls).
void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out, size_t max_tokens) const {
  if (max_tokens == std::numeric_limits<size_t>::max()) return encode_chunk(text, out);
  while (!text.empty() && out.size() <= max_tokens) {
    size_t end = text.size();
    for (size_t i = std::min(kChunkBytes, text.size()); i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (cut_before[c] && text[i - 1] != text[i]) {
        end = i;
        break;
      }
    }
    encode_chunk(text.substr(0, end), out);
    text.remove_prefix(end);
  }
}

// As the HF slow tokenizer does: the leftmost (then longest) special-token string. `found` keeps
// each string's next position from earlier calls, so a text full of "</s>" is scanned once per
// string rather than once per occurrence.
Tokenizer::Impl::Match Tokenizer::Impl::next_special(std::string_view text, size_t pos,
                                                     std::vector<size_t>& found) const {
  if (found.empty())
    for (const auto& special : special_tokens) found.push_back(text.find(special.first, pos));
  Match best;
  for (size_t k = 0; k < special_tokens.size(); ++k) {
    const auto& [literal, id] = special_tokens[k];
    if (found[k] != std::string_view::npos && found[k] < pos) found[k] = text.find(literal, pos);
    const size_t at = found[k];
    if (at == std::string_view::npos) continue;
    if (at < best.at || (at == best.at && literal.size() > best.length)) best = {at, literal.size(), id};
  }
  return best;
}

// The leftmost (then longest) reserved piece written in the text.
Tokenizer::Impl::Match Tokenizer::Impl::next_reserved(std::string_view text, size_t pos) const {
  if (reserved.empty()) return {};
  for (size_t at = pos; at < text.size(); ++at) {
    if (!reserved_first[static_cast<unsigned char>(text[at])]) continue;
    for (size_t length : reserved_lengths)
      if (at + length <= text.size() && reserved.contains(text.substr(at, length))) return {at, length, -1};
  }
  return {};
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) { return from_model_bytes(read_text_file(path), path); }

Tokenizer Tokenizer::from_model_bytes(std::string serialized_model_proto, const std::string& what) {
  Tokenizer t;
  Impl& m = *t.impl_;
  m.what = what;
  SpmModel model = parse_model_proto(serialized_model_proto, what);
  m.pieces = std::move(model.pieces);
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
  m.index_pieces(model.normalizer, model.trainer);
  for (const auto& [literal, id] : m.special_tokens)
    if (m.max_bytes_per_token > 0) m.max_bytes_per_token = std::max(m.max_bytes_per_token, literal.size());
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

int32_t restore_user_defined_types(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                                   std::vector<int32_t>& types) {
  const size_t n = std::min({pieces.size(), scores.size(), types.size()});
  size_t first_byte = n;
  for (size_t i = 0; i < n && first_byte == n; ++i)
    if (types[i] == static_cast<int32_t>(PieceType::Byte)) first_byte = i;
  if (first_byte == n) return 0;
  // Only when every piece before the bytes is a meta piece (or such a NORMAL one): a vocabulary whose
  // learned pieces come before its bytes is not laid out by SentencePiece, and is left as it is.
  for (size_t i = 0; i < first_byte; ++i)
    if (types[i] == static_cast<int32_t>(PieceType::Normal) && scores[i] != 0.0f) return 0;
  int32_t restored = 0;
  for (size_t i = 0; i < first_byte; ++i)
    if (types[i] == static_cast<int32_t>(PieceType::Normal) && !pieces[i].empty()) {
      types[i] = static_cast<int32_t>(PieceType::UserDefined);
      ++restored;
    }
  return restored;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const { return encode(text, EncodeOptions{}); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& m = *impl_;
  const size_t max_tokens = options.max_tokens;
  std::vector<int32_t> out;
  std::vector<size_t> found;  // next_special's memory
  size_t pos = 0;
  while (pos < text.size() && out.size() <= max_tokens) {
    if (options.special_tokens) {
      // The special tokens are AddedToken(lstrip=False, rstrip=False) in BaichuanTokenizer, so no
      // surrounding whitespace is stripped; `single_word` and `normalized` have no effect in the
      // transformers versions Baichuan 2 supports (<= 4.33), whose slow tokenizer ignores them. The
      // user-defined pieces (<reserved_106>, ...) are matched by SentencePiece itself.
      const Impl::Match s = m.next_special(text, pos, found);
      if (s.at == std::string_view::npos) break;
      m.encode_text(text.substr(pos, s.at - pos), out, max_tokens);
      out.push_back(s.id);
      pos = s.at + s.length;
    } else {
      // A reserved piece's string is cut after its first character: SentencePiece then sees
      // "<" and "reserved_107>...", neither of which is a piece of its own.
      const Impl::Match r = m.next_reserved(text, pos);
      if (r.at == std::string_view::npos) break;
      m.encode_text(text.substr(pos, r.at + 1 - pos), out, max_tokens);
      pos = r.at + 1;
    }
  }
  if (pos < text.size() && out.size() <= max_tokens) m.encode_text(text.substr(pos), out, max_tokens);
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

size_t Tokenizer::max_bytes_per_token() const { return impl_->max_bytes_per_token; }
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
