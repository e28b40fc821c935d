#include "generate/json_constraint.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace baichuan {

namespace {

constexpr std::string_view kJsonLiterals[] = {"true", "false", "null"};

bool is_json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool JsonPrefixState::value_start(unsigned char c) {
  switch (c) {
    case '-': mode_ = Mode::Minus; return true;
    case '0': mode_ = Mode::Zero; return true;
    case '"': mode_ = Mode::String; in_key_ = false; return true;
    case '{':
    case '[':
      if (depth_ == kMaxDepth) return false;
      if (c == '{') objects_ |= uint64_t{1} << depth_;
      else objects_ &= ~(uint64_t{1} << depth_);
      ++depth_;
      mode_ = c == '{' ? Mode::ObjectFirstKey : Mode::ArrayFirst;
      return true;
    case 't': case 'f': case 'n':
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      literal_pos_ = 1;
      mode_ = Mode::Literal;
      return true;
    default:
      if (c >= '1' && c <= '9') {
        mode_ = Mode::Int;
        return true;
      }
      return false;
  }
}

bool JsonPrefixState::close_container(unsigned char c) {
  const bool object = (objects_ >> (depth_ - 1)) & 1;
  if (c != (object ? '}' : ']')) return false;
  --depth_;
  mode_ = depth_ == 0 ? Mode::Done : Mode::AfterValue;
  return true;
}

bool JsonPrefixState::end_value() {
  mode_ = Mode::AfterValue;  // values other than the top-level object are always inside a container
  return true;
}

bool JsonPrefixState::after_number(unsigned char c) {
  end_value();
  return step(c);
}

bool JsonPrefixState::step(unsigned char c) {
  switch (mode_) {
    case Mode::Start:
      if (is_json_space(c)) return true;
      if (c != '{') return false;  // json_object: the top-level value is an object
      return value_start(c);
    case Mode::ObjectFirstKey:
    case Mode::ObjectKey:
      if (is_json_space(c)) return true;
      if (c == '"') {
        mode_ = Mode::String;
        in_key_ = true;
        return true;
      }
      return mode_ == Mode::ObjectFirstKey && c == '}' && close_container(c);
    case Mode::Colon:
      if (is_json_space(c)) return true;
      if (c != ':') return false;
      mode_ = Mode::Value;
      return true;
    case Mode::Value:
      return is_json_space(c) || value_start(c);
    case Mode::ArrayFirst:
      if (is_json_space(c)) return true;
      return c == ']' ? close_container(c) : value_start(c);
    case Mode::AfterValue:
      if (is_json_space(c)) return true;
      if (c == ',') {
        mode_ = (objects_ >> (depth_ - 1)) & 1 ? Mode::ObjectKey : Mode::Value;
        return true;
      }
      return (c == '}' || c == ']') && close_container(c);
    case Mode::String:
      if (utf8_left_ > 0) {
        if (c < utf8_lo_ || c > utf8_hi_) return false;
        --utf8_left_;
        utf8_lo_ = 0x80;
        utf8_hi_ = 0xBF;
        return true;
      }
      if (c == '"') {
        if (!in_key_) return end_value();
        in_key_ = false;
        mode_ = Mode::Colon;
        return true;
      }
      if (c == '\\') {
        mode_ = Mode::Escape;
        return true;
      }
      if (c < 0x20) return false;  // control characters must be escaped
      if (c < 0x80) return true;
      // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
      if (c >= 0xC2 && c <= 0xDF) {
        utf8_left_ = 1;
      } else if (c >= 0xE0 && c <= 0xEF) {
        utf8_left_ = 2;
        if (c == 0xE0) utf8_lo_ = 0xA0;
        if (c == 0xED) utf8_hi_ = 0x9F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        utf8_left_ = 3;
        if (c == 0xF0) utf8_lo_ = 0x90;
        if (c == 0xF4) utf8_hi_ = 0x8F;
      } else {
        return false;
      }
      return true;
    case Mode::Escape:
      if (c == 'u') {
        mode_ = Mode::Hex;
        hex_left_ = 4;
        hex_seen_ = 0;
        return true;
      }
      if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
        mode_ = Mode::String;
        return true;
      }
      return false;
    case Mode::Hex: {
      const int d = hex_digit(c);
      if (d < 0) return false;
      // Surrogates (D800-DFFF) are told by the first two digits: a high one (D8-DB) must be
      // followed by \u and a low one (DC-DF), and a low one never stands alone.
      if (hex_left_ == 4) {
        if (low_surrogate_ && d != 0xD) return false;
        hex_seen_ = static_cast<uint8_t>(d);
      } else if (hex_left_ == 3) {
        const bool first_d = hex_seen_ == 0xD;
        if (low_surrogate_ && d < 0xC) return false;
        if (!low_surrogate_ && first_d && d >= 0xC) return false;
        hex_seen_ = first_d && d >= 0x8 && !low_surrogate_ ? 0xFF : 0;  // 0xFF: a high surrogate
      }
      if (--hex_left_ > 0) return true;
      if (hex_seen_ == 0xFF) {
        mode_ = Mode::SurrogateSlash;
        low_surrogate_ = true;
      } else {
        mode_ = Mode::String;
        low_surrogate_ = false;
      }
      hex_seen_ = 0;
      return true;
    }
    case Mode::SurrogateSlash:
      if (c != '\\') return false;
      mode_ = Mode::SurrogateU;
      return true;
    case Mode::SurrogateU:
      if (c != 'u') return false;
      mode_ = Mode::Hex;
      hex_left_ = 4;
      return true;
    case Mode::Minus:
      if (c == '0') mode_ = Mode::Zero;
      else if (is_digit(c)) mode_ = Mode::Int;
      else return false;
      return true;
    case Mode::Zero:
    case Mode::Int:
    case Mode::Frac:
      if (is_digit(c) && mode_ != Mode::Zero) return true;
      if (c == '.' && mode_ != Mode::Frac) {
        mode_ = Mode::FracStart;
        return true;
      }
      if (c == 'e' || c == 'E') {
        mode_ = Mode::ExpStart;
        return true;
      }
      return after_number(c);
    case Mode::FracStart:
      if (!is_digit(c)) return false;
      mode_ = Mode::Frac;
      return true;
    case Mode::ExpStart:
      if (c == '+' || c == '-') {
        mode_ = Mode::ExpSign;
        return true;
      }
      [[fallthrough]];
    case Mode::ExpSign:
      if (!is_digit(c)) return false;
      mode_ = Mode::Exp;
      return true;
    case Mode::Exp:
      return is_digit(c) || after_number(c);
    case Mode::Literal: {
      const std::string_view word = kJsonLiterals[literal_];
      if (c != static_cast<unsigned char>(word[literal_pos_])) return false;
      if (++literal_pos_ == word.size()) return end_value();
      return true;
    }
    case Mode::Done:
      return false;
  }
  return false;
}

bool JsonPrefixState::step(std::string_view bytes) {
  for (char c : bytes)
    if (!step(static_cast<unsigned char>(c))) return false;
  return true;
}

int64_t JsonPrefixState::bytes_to_complete() const {
  const int64_t close = depth_;  // one bracket per open container
  const int64_t key_rest = 2;    // after a key's closing quote: ":0"
  const int64_t string_close = 1 + (in_key_ ? key_rest : 0);
  switch (mode_) {
    case Mode::Start: return 2;  // "{}"
    case Mode::Done: return 0;
    case Mode::ObjectFirstKey:
    case Mode::ArrayFirst:
    case Mode::AfterValue:
    case Mode::Zero:
    case Mode::Int:
    case Mode::Frac:
    case Mode::Exp:
      return close;
    case Mode::ObjectKey: return 2 + key_rest + close;  // "":0
    case Mode::Colon: return key_rest + close;
    case Mode::Value:
    case Mode::Minus:
    case Mode::FracStart:
    case Mode::ExpStart:
    case Mode::ExpSign:
      return 1 + close;
    case Mode::String: return utf8_left_ + string_close + close;
    case Mode::Escape: return 1 + string_close + close;
    case Mode::Hex: return hex_left_ + (hex_seen_ == 0xFF ? 6 : 0) + string_close + close;
    case Mode::SurrogateSlash: return 6 + string_close + close;
    case Mode::SurrogateU: return 5 + string_close + close;
    case Mode::Literal: return static_cast<int64_t>(kJsonLiterals[literal_].size()) - literal_pos_ + close;
  }
  return close;
}

std::string token_bytes(const Tokenizer& tokenizer, int32_t id) {
  const std::string& piece = tokenizer.piece(id);
  if (tokenizer.type(id) == PieceType::Byte && piece.size() == 6 && piece.starts_with("<0x"))  // "<0xAB>"
    return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
  return tokenizer.decode({id});
}

JsonTokenTable::JsonTokenTable(const Tokenizer& tokenizer) {
  const int32_t n = tokenizer.vocab_size();
  texts_.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const PieceType type = tokenizer.type(id);
    // Control, unknown and unused tokens and the role tokens (<reserved_N>) are never JSON text.
    if (type == PieceType::Byte || type == PieceType::Normal ||
        (type == PieceType::UserDefined && !tokenizer.piece(id).starts_with("<reserved_")))
      texts_[static_cast<size_t>(id)] = token_bytes(tokenizer, id);
  }
  plain_string_text_.assign(static_cast<size_t>(n), 0);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& t = texts_[static_cast<size_t>(id)];
    if (t.empty()) continue;
    order_.push_back(id);
    JsonPrefixState in_string;
    in_string.step("{\"");
    const bool plain = t.find_first_of("\"\\") == std::string::npos && in_string.step(t) &&
                       in_string.between_string_characters();
    plain_string_text_[static_cast<size_t>(id)] = plain;
    if (!plain) special_in_string_.push_back(id);
  }
  std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) { return text(a) < text(b); });
  shared_.resize(order_.size(), 0);
  for (size_t i = 1; i < order_.size(); ++i) {
    const std::string &a = text(order_[i - 1]), &b = text(order_[i]);
    const size_t limit = std::min({a.size(), b.size(), size_t{std::numeric_limits<uint16_t>::max()}});
    size_t k = 0;
    while (k < limit && a[k] == b[k]) ++k;
    shared_[i] = static_cast<uint16_t>(k);
  }
}

void JsonTokenTable::allowed_tokens(const JsonPrefixState& state, int64_t max_bytes_to_complete,
                                    std::vector<char>& allowed) const {
  allowed.assign(texts_.size(), 0);
  if (state.between_string_characters()) {
    const char plain_allowed = state.bytes_to_complete() <= max_bytes_to_complete;
    for (size_t id = 0; id < texts_.size(); ++id) allowed[id] = plain_string_text_[id] ? plain_allowed : 0;
    for (int32_t id : special_in_string_) {
      JsonPrefixState s = state;
      allowed[static_cast<size_t>(id)] = s.step(text(id)) && s.bytes_to_complete() <= max_bytes_to_complete;
    }
    return;
  }
  // path[k]: the state after the first k bytes of the previous token; valid for k <= good, where
  // good is how many of its bytes were accepted (all of them, or up to the one that failed).
  thread_local std::vector<JsonPrefixState> path;
  path.assign(1, state);
  size_t good = 0;
  for (size_t i = 0; i < order_.size(); ++i) {
    const std::string& t = text(order_[i]);
    const size_t from = shared_[i];
    if (from > good) continue;  // starts with the bytes that failed the previous token
    if (path.size() < t.size() + 1) path.resize(t.size() + 1);
    size_t k = from;
    for (; k < t.size(); ++k) {
      path[k + 1] = path[k];
      if (!path[k + 1].step(static_cast<unsigned char>(t[k]))) break;
    }
    good = k;
    if (k == t.size() && path[k].bytes_to_complete() <= max_bytes_to_complete)
      allowed[static_cast<size_t>(order_[i])] = 1;
  }
}

void JsonConstraint::mask(std::span<float> logits, int64_t tokens_left) {
  // Every token must leave a completion that fits in the tokens after it (each at least one byte).
  table_->allowed_tokens(state_, tokens_left - 1, allowed_);
  if (std::find(allowed_.begin(), allowed_.end(), 1) == allowed_.end())  // no room to finish at all:
    table_->allowed_tokens(state_, std::numeric_limits<int64_t>::max(), allowed_);  // stay a prefix
  for (size_t i = 0; i < logits.size(); ++i)
    if (i >= allowed_.size() || !allowed_[i]) logits[i] = -std::numeric_limits<float>::infinity();
}

void JsonConstraint::accept(int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= allowed_.size() || !allowed_[static_cast<size_t>(id)] ||
      !state_.step(table_->text(id)))
    fail("internal: token ", id, " is not allowed by the JSON constraint");
}

}  // namespace baichuan
