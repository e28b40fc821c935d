// The GGUF/ggml block-quantized formats, one struct per format, laid out byte for byte as ggml
// writes them (little-endian), so tensors from llama.cpp files can be read in place.
//
// f16 fields hold raw IEEE half bits (convert with f16_to_f32 / f32_to_f16 from core/half.h).
// Every member is a byte or a uint16_t, so the structs have no padding; their alignment is 2, but
// pointers into mmapped files may be odd, so code reads a block with memcpy into a local struct.
//
// Element order within a block (n = block_elems):
//   Q8_0: qs[j] is element j; x = d * qs[j].
//   Q4_0, Q4_1: byte qs[j] holds element j in its low nibble and element j + 16 in its high nibble.
//   Q5_0, Q5_1: as Q4_x for the low 4 bits; bit 4 of element j is bit j of the little-endian
//     uint32 qh (elements 0..15 in bits 0..15, elements 16..31 in bits 16..31).
//   Q4_0: x = d * (q - 8);  Q4_1: x = d * q + m;  Q5_0: x = d * (q - 16);  Q5_1: x = d * q + m.
//   Q4_K, Q5_K: 256 elements in 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min
//     (see scale_min_k4); x = d * scale * q - dmin * min. Each 64-element chunk c uses 32 bytes of
//     qs: low nibbles are sub-block 2c, high nibbles sub-block 2c + 1. In Q5_K bit 4 of element l of
//     sub-block s is bit s of qh[l].
//   Q6_K: 256 elements in 16 sub-blocks of 16 with int8 scales; x = d * scale * (q - 32). See
//     dequantize.cpp for the packing of the 6-bit values into ql (low 4 bits) and qh (high 2 bits).
//   NF4 (not a GGUF type: the bitsandbytes 4-bit weights of the official *-Chat-4bits checkpoints, kept
//     as read): 64 elements with a float32 absmax d (the file's double-quantised scale, decoded once
//     at load); byte qs[j] holds code c of element j in its low nibble and of element j + 32 in its
//     high nibble; x = float16(kNf4Values[c] * d), the rounding bitsandbytes' dequantization does.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace baichuan::quant {

inline constexpr int kBlockElems = 32;   // Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
inline constexpr int kSuperElems = 256;  // the K-quants
inline constexpr int kScaleBytesK = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

struct block_q8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kBlockElems];
};

struct block_q4_0 {
  uint16_t d;  // f16 scale
  uint8_t qs[kBlockElems / 2];
};

struct block_q4_1 {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum (offset)
  uint8_t qs[kBlockElems / 2];
};

struct block_q5_0 {
  uint16_t d;     // f16 scale
  uint8_t qh[4];  // fifth bits, a little-endian uint32
  uint8_t qs[kBlockElems / 2];
};

struct block_q5_1 {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum (offset)
  uint8_t qh[4];
  uint8_t qs[kBlockElems / 2];
};

inline constexpr int kNf4BlockElems = 64;

// bitsandbytes' NF4 code values (its quant_state holds the same 16 float32 values).
inline constexpr float kNf4Values[16] = {-1.0f,
                                         -0.6961928009986877f,
                                         -0.5250730514526367f,
                                         -0.39491748809814453f,
                                         -0.28444138169288635f,
                                         -0.18477343022823334f,
                                         -0.09105003625154495f,
                                         0.0f,
                                         0.07958029955625534f,
                                         0.16093020141124725f,
                                         0.24611230194568634f,
                                         0.33791524171829224f,
                                         0.44070982933044434f,
                                         0.5626170039176941f,
                                         0.7229568362236023f,
                                         1.0f};

struct block_nf4 {
  uint8_t d[4];  // float32 absmax, little-endian (bytes, so the struct has no padding)
  uint8_t qs[kNf4BlockElems / 2];
};

struct block_q4_K {
  uint16_t d;     // f16 super-block scale of the sub-block scales
  uint16_t dmin;  // f16 super-block scale of the sub-block mins
  uint8_t scales[kScaleBytesK];
  uint8_t qs[kSuperElems / 2];
};

struct block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kScaleBytesK];
  uint8_t qh[kSuperElems / 8];  // fifth bits
  uint8_t qs[kSuperElems / 2];  // low 4 bits
};

struct block_q6_K {
  uint8_t ql[kSuperElems / 2];   // low 4 bits
  uint8_t qh[kSuperElems / 4];   // high 2 bits
  int8_t scales[kSuperElems / 16];
  uint16_t d;  // f16 super-block scale
};

static_assert(sizeof(block_q8_0) == dtype_info(DType::Q8_0).block_bytes);
static_assert(sizeof(block_q4_0) == dtype_info(DType::Q4_0).block_bytes);
static_assert(sizeof(block_q4_1) == dtype_info(DType::Q4_1).block_bytes);
static_assert(sizeof(block_q5_0) == dtype_info(DType::Q5_0).block_bytes);
static_assert(sizeof(block_q5_1) == dtype_info(DType::Q5_1).block_bytes);
static_assert(sizeof(block_q4_K) == dtype_info(DType::Q4_K).block_bytes);
static_assert(sizeof(block_q5_K) == dtype_info(DType::Q5_K).block_bytes);
static_assert(sizeof(block_q6_K) == dtype_info(DType::Q6_K).block_bytes);
static_assert(sizeof(block_nf4) == dtype_info(DType::NF4).block_bytes);
static_assert(dtype_info(DType::NF4).block_elems == kNf4BlockElems);
static_assert(dtype_info(DType::Q8_0).block_elems == kBlockElems);
static_assert(dtype_info(DType::Q4_K).block_elems == kSuperElems);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block. Sub-blocks 0..3 keep
// theirs in the low 6 bits of scales[j] (scale) and scales[j + 4] (min); sub-blocks 4..7 keep the
// low 4 bits in the nibbles of scales[j + 4] (scale low, min high) and the top 2 bits in the top
// 2 bits of scales[j - 4] (scale) and scales[j] (min).
struct ScaleMin {
  uint8_t scale, min;
};
constexpr ScaleMin scale_min_k4(const uint8_t* scales, int j) {
  if (j < 4) return {static_cast<uint8_t>(scales[j] & 63), static_cast<uint8_t>(scales[j + 4] & 63)};
  return {static_cast<uint8_t>((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4)),
          static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))};
}

}  // namespace baichuan::quant
