// Constrained decoding for OpenAI's response_format {"type": "json_object"}: at every step, every
// token whose text would make the output something that is not the prefix of a JSON object gets
// probability 0, and the generation ends as soon as the object is closed.
//
// JsonPrefixState is a pushdown automaton over bytes that accepts exactly the prefixes of
// `ws* object` (RFC 8259, strict UTF-8, \u escapes with paired surrogates, nesting up to 64). It is
// a small value, so trying a token from a state is a copy and a few byte steps.
// JsonTokenTable holds what does not change from step to step: each token's text, the tokens in
// byte order and how many leading bytes each shares with the one before. Masking walks that order
// like a trie: the bytes two neighbours share are stepped once, and a prefix that fails rejects
// every token that starts with it without looking at them. Inside a string, where nearly every token
// is allowed and the walk would visit the whole vocabulary, the tokens that are plain string text
// (known in advance) are allowed without stepping. One step of the output advances the
// state by the sampled token's bytes only (no re-scan of the output).
//
// Budget: a token is allowed only if the shortest completion after it fits in the tokens left
// (counting a byte per token, which the vocabulary's byte tokens always make possible), so a
// generation with max_tokens >= 2 ends in a complete object rather than being cut off.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace baichuan {

// The bytes a token adds to decoded text: a byte token's one byte (which alone may be an incomplete
// UTF-8 character), the decoded text of any other piece ("" for control tokens such as </s>).
std::string token_bytes(const Tokenizer& tokenizer, int32_t id);

class JsonPrefixState {
 public:
  static constexpr int kMaxDepth = 64;

  // Consumes one byte; false (and the state is then unspecified) when the output would stop being
  // a JSON-object prefix.
  bool step(unsigned char c);
  bool step(std::string_view bytes);
  bool complete() const { return mode_ == Mode::Done; }
  // Inside a string between characters: where any text without '"', '\', control characters or an
  // incomplete UTF-8 character leaves the state as it is.
  bool between_string_characters() const { return mode_ == Mode::String && utf8_left_ == 0; }
  // The fewest bytes that turn the output into a complete object (0 when complete).
  int64_t bytes_to_complete() const;

 private:
  enum class Mode : uint8_t {
    Start,          // before the top-level '{'
    ObjectFirstKey, // after '{': a key or '}'
    ObjectKey,      // after ',' in an object: a key
    Colon,          // after a key
    Value,          // after ':' or ',' in an array
    ArrayFirst,     // after '[': a value or ']'
    AfterValue,     // after a value in a container: ',' or the closing bracket
    String,
    Escape,         // after '\'
    Hex,            // inside \uXXXX
    SurrogateSlash, // after a high surrogate: must be followed by \u + a low surrogate
    SurrogateU,
    Minus, Zero, Int, FracStart, Frac, ExpStart, ExpSign, Exp,
    Literal,
    Done,
  };
  bool value_start(unsigned char c);
  bool close_container(unsigned char c);
  bool end_value();  // a value ended: AfterValue
  bool after_number(unsigned char c);  // a byte that ends a number

  Mode mode_ = Mode::Start;
  uint8_t depth_ = 0;
  bool in_key_ = false;       // the string being read is an object key
  uint8_t hex_left_ = 0;      // \u digits still to come
  uint8_t hex_seen_ = 0;      // \u digits read so far
  bool low_surrogate_ = false;  // this \u must be a low surrogate
  uint8_t utf8_left_ = 0;     // continuation bytes still to come in a string
  uint8_t utf8_lo_ = 0x80, utf8_hi_ = 0xBF;  // the range of the next continuation byte
  uint8_t literal_ = 0, literal_pos_ = 0;  // true/false/null and how much of it is read
  uint64_t objects_ = 0;      // bit d set: the container at depth d+1 is an object
};

class JsonTokenTable {
 public:
  // Texts as the tokenizer decodes them; control, unknown and unused tokens (EOS included) have
  // none and are never allowed.
  explicit JsonTokenTable(const Tokenizer& tokenizer);
  int32_t vocab_size() const { return static_cast<int32_t>(texts_.size()); }
  const std::string& text(int32_t id) const { return texts_[static_cast<size_t>(id)]; }
  // Sets allowed[id] for every token after which the output is still a prefix that needs at most
  // `max_bytes_to_complete` more bytes; clears the others.
  void allowed_tokens(const JsonPrefixState& state, int64_t max_bytes_to_complete, std::vector<char>& allowed) const;

 private:
  std::vector<std::string> texts_;
  // Inside a string most tokens are plain text (see between_string_characters()): only the others
  // need stepping there.
  std::vector<char> plain_string_text_;
  std::vector<int32_t> special_in_string_;  // ids with text that is not plain string text
  std::vector<int32_t> order_;    // ids with text, in byte order
  std::vector<uint16_t> shared_;  // bytes order_[i] shares with order_[i-1]
};

// One generation's constraint.
class JsonConstraint {
 public:
  explicit JsonConstraint(std::shared_ptr<const JsonTokenTable> table) : table_(std::move(table)) {}
  // Sets the logit of every token not allowed now to -inf; `tokens_left` is the most tokens the
  // generation may still produce.
  void mask(std::span<float> logits, int64_t tokens_left);
  // Advances by the sampled token; throws Error for a token mask() did not allow.
  void accept(int32_t id);
  bool complete() const { return state_.complete(); }

 private:
  std::shared_ptr<const JsonTokenTable> table_;
  JsonPrefixState state_;
  std::vector<char> allowed_;
};

}  // namespace baichuan
