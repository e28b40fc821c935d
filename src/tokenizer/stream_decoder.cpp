// StreamDecoder keeps a short window of ids: pending_[0] is the last id already emitted (kept as
// context, so SentencePiece renders the following pieces exactly as it would mid-text), followed by
// byte-fallback ids that do not yet form a complete UTF-8 character. Each push decodes only that
// window (at most 5 ids), so the cost per token does not grow with the length of the generation.
#include "tokenizer/tokenizer.h"

namespace baichuan {
namespace {

// The byte of a byte-fallback piece "<0xAB>", or -1 for any other piece.
int piece_byte(const Tokenizer& tokenizer, int32_t id) {
  if (tokenizer.type(id) != PieceType::Byte) return -1;
  const std::string& p = tokenizer.piece(id);
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    char c = p[i];
    // SentencePiece names byte pieces in upper-case hex.
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// True when the trailing byte pieces end inside a UTF-8 sequence that more bytes could complete:
// a valid lead byte followed by fewer continuation bytes than it announces.
bool ends_in_partial_utf8(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  int continuation_bytes = 0;
  for (size_t i = ids.size(); i-- > 0;) {
    int b = piece_byte(tokenizer, ids[i]);
    if (b < 0) return false;
    if ((b & 0xC0) == 0x80) {
      if (++continuation_bytes > 3) return false;
      continue;
    }
    // C0, C1 and F5..FF can never start a valid sequence; SentencePiece renders them as U+FFFD at once.
    int needed = b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 0;
    return continuation_bytes < needed;
  }
  return false;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  tokenizer_.type(id);  // throws for an id outside the vocabulary before it enters the window
  pending_.push_back(id);
  if (ends_in_partial_utf8(tokenizer_, pending_)) return "";
  std::string text = tokenizer_.decode(pending_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  pending_.assign(1, id);
  emitted_ = tokenizer_.decode(pending_).size();
  return out;
}

std::string StreamDecoder::flush() {
  std::string text = tokenizer_.decode(pending_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  pending_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace baichuan
