// The Baichuan 2 tokenizer: the real SentencePiece model through the SentencePiece library, with the
// semantics of the official BaichuanTokenizer (add_bos_token=false): user-defined pieces such as
// <reserved_106> match inside text, and the special tokens <unk>, <s>, </s> written literally in the
// text are split out first and become their ids, as the Hugging Face slow tokenizer does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace baichuan {

// One vocabulary entry as GGUF stores it (tokenizer.ggml.tokens / scores / token_type).
enum class PieceType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct EncodeOptions {
  // true (the official tokenizer): "<s>", "</s>", "<unk>" and the reserved pieces ("<reserved_106>",
  // "<reserved_107>", ...) written in the text become those tokens. false: they stay text, encoded
  // as their characters, so text from a client cannot forge a role or control token. Other
  // user-defined pieces ("\n", "。", "<td>") are ordinary text and are matched either way.
  bool special_tokens = true;
  // Encoding stops once more than this many ids are out; the result then holds only a prefix (still
  // longer than the limit). A text far over a context costs a few chunks, not the whole text.
  size_t max_tokens = std::numeric_limits<size_t>::max();
};

class Tokenizer {
 public:
  // `what` names the source in error messages (a path, or "model.gguf: tokenizer.ggml.tokens").
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_model_bytes(std::string serialized_model_proto, const std::string& what);
  // Rebuilds an equivalent SentencePiece model (BPE, byte fallback, Baichuan 2's normalizer settings)
  // from a GGUF vocabulary that does not carry the original tokenizer.model bytes.
  static Tokenizer from_vocab(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                              const std::vector<int32_t>& types, const std::string& what);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text) const;  // no BOS
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // special/control tokens render as ""

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;  // 0 (<unk>) for Baichuan 2, as its config says
  // The most bytes of text one token can stand for (the longest piece, a space counting one byte), so
  // a text of n bytes has at least n / max_bytes_per_token() tokens. 0 when there is no such bound:
  // without byte fallback a run of unknown characters is one <unk>, and a normalizer can shrink text.
  size_t max_bytes_per_token() const;
  const std::string& piece(int32_t id) const;
  float score(int32_t id) const;
  PieceType type(int32_t id) const;
  // The serialized SentencePiece ModelProto (the bytes of tokenizer.model), to embed in GGUF.
  const std::string& model_bytes() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// llama.cpp's converter (convert_hf_to_gguf.py) writes SentencePiece's USER_DEFINED pieces (type 4) as
// NORMAL (1): it maps only the unknown, control, unused and byte types. A SentencePiece model lays out
// its meta pieces (unknown, control, user-defined) first, then the byte pieces, then the learned
// pieces, and gives user-defined pieces the score 0. So a NORMAL piece of score 0 placed before the
// first BYTE piece can only be a user-defined piece that lost its type: this sets those back to 4 and
// returns how many it changed (0 for a vocabulary that kept its types or has no byte pieces).
int32_t restore_user_defined_types(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                                   std::vector<int32_t>& types);

// Turns ids into text as they are generated, emitting only complete UTF-8: a character split across
// byte-fallback pieces is held back until its last byte arrives.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);  // the newly completed text, possibly empty
  std::string flush();           // whatever is left (an incomplete tail decodes as U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  std::vector<int32_t> pending_;
  size_t emitted_ = 0;  // bytes of decode(pending_) already returned
};

}  // namespace baichuan
