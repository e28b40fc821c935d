// The parts of SentencePiece's ModelProto (sentencepiece_model.proto, proto2) that the tokenizer reads
// and writes, in protobuf wire format. Debian ships the SentencePiece library without the generated
// sentencepiece_model.pb.h, so these few fields are encoded and decoded by hand; fields not listed
// here are skipped when reading.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace baichuan {

// ModelProto.SentencePiece (ModelProto field 1): piece = 1, score = 2, type = 3.
struct SpmPiece {
  std::string piece;
  float score = 0.0f;
  int32_t type = 1;  // NORMAL; see PieceType in tokenizer.h for the values
};

// TrainerSpec (ModelProto field 2). Defaults are the proto defaults.
struct SpmTrainerSpec {
  int32_t model_type = 1;                // field 3: UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4
  int32_t vocab_size = 8000;             // field 4
  int32_t max_sentencepiece_length = 16; // field 20
  bool split_digits = false;             // field 25
  bool allow_whitespace_only_pieces = false;  // field 26
  bool byte_fallback = false;            // field 35
  int32_t unk_id = 0;                    // field 40
  int32_t bos_id = 1;                    // field 41
  int32_t eos_id = 2;                    // field 42
  int32_t pad_id = -1;                   // field 43
};

// NormalizerSpec (ModelProto field 3). Defaults are the proto defaults.
struct SpmNormalizerSpec {
  std::string name;                      // field 1
  std::string precompiled_charsmap;      // field 2
  bool add_dummy_prefix = true;          // field 3
  bool remove_extra_whitespaces = true;  // field 4
  bool escape_whitespaces = true;        // field 5
};

struct SpmModel {
  std::vector<SpmPiece> pieces;
  SpmTrainerSpec trainer;
  SpmNormalizerSpec normalizer;
};

// Throws Error naming `what` and the byte offset on malformed input.
SpmModel parse_model_proto(std::string_view bytes, const std::string& what);

// Writes every field above explicitly (no self-test data, no denormalizer spec).
std::string serialize_model_proto(const SpmModel& model);

}  // namespace baichuan
