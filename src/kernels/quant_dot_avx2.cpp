// AVX2+FMA+F16C versions of kernels/quant_dot.h; compiled with those flags, called only after a CPU check.
//
// The integer core is _mm256_maddubs_epi16 (unsigned weight codes x signed activations, pairs summed
// to int16) followed by _mm256_madd_epi16 (pairs summed to int32, optionally times a sub-block scale).
// No int16 sum can saturate: codes are at most 63 (or |w| <= 128 for Q8_0) and |activations| <= 127.
// Offsets of the codes (q - 8, q - 16, q - 32) and block minimums are applied through the activation
// sums (s, bsums) instead of per element. Each block ends in one FMA into a float accumulator; the
// horizontal sum happens once per row.
#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "kernels/quant_dot.h"
#include "kernels/quant_dot_table.h"
#include "quant/blocks.h"

namespace baichuan::kernels::avx2 {
namespace {

using namespace quant;

float hsum(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

float hsum(__m256 v) { return hsum(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))); }

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// An f16 field of a block at any address, as float.
float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Products of unsigned bytes u with signed bytes s, summed four at a time into eight int32 lanes.
__m256i dot_u8_i8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }

// As dot_u8_i8, but each int16 pair sum is multiplied by the matching int16 lane of `scales`.
__m256i scaled_dot_u8_i8(__m256i u, __m256i s, __m256i scales) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scales);
}

__m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
__m256i high_nibbles(__m256i v) { return low_nibbles(_mm256_srli_epi16(v, 4)); }

// The 32 4-bit codes of a Q4_x/Q5_x block in element order: byte j holds element j in its low
// nibble and element j + 16 in its high nibble.
__m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i packed = load128(qs);
  return low_nibbles(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed));
}

// 0x10 in byte j where bit j of the little-endian uint32 at qh is set: the fifth bits of Q5_0/Q5_1.
__m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  // Byte j gets byte j / 8 of `bits` (each 128-bit lane holds a copy of all four)...
  const __m256i byte_index = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), byte_index);
  // ...and keeps bit j % 8 of it.
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// ---- 32-element blocks: block dot = d_w * d_a * sum(q * a) + offset_w * s ----------------------
// offset_w is the block's min m (Q4_1, Q5_1) or a fixed multiple of d (Q4_0: -8 d, Q5_0: -16 d).
// Each block starts with d (and m): one conversion yields both, one multiply by the activation's
// adjacent (d, s) yields (d_w * d_a, m * s or d_w * s), whose second lane sums into the offsets.

static_assert(offsetof(ActBlock32, d) == 0 && offsetof(ActBlock32, s) == 4);

// How the 32-element blocks of each type meet the activations: a specialization per GGUF block.
template <typename Block>
struct BlockFormat;

template <>
struct BlockFormat<block_q8_0> {
  using Block = block_q8_0;
  static constexpr bool kHasMin = false;
  static constexpr float kOffsetPerD = 0.0f;
  // Signed weights: move each weight's sign onto its activation so maddubs sees |w| (-128 -> 128).
  static __m256i dot(const uint8_t* b, __m256i a) {
    const __m256i w = load256(b + offsetof(Block, qs));
    return dot_u8_i8(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
  }
};

template <>
struct BlockFormat<block_q4_0> {
  using Block = block_q4_0;
  static constexpr bool kHasMin = false;
  static constexpr float kOffsetPerD = -8.0f;
  static __m256i dot(const uint8_t* b, __m256i a) { return dot_u8_i8(unpack_nibbles(b + offsetof(Block, qs)), a); }
};

template <>
struct BlockFormat<block_q4_1> {
  using Block = block_q4_1;
  static constexpr bool kHasMin = true;
  static __m256i dot(const uint8_t* b, __m256i a) { return dot_u8_i8(unpack_nibbles(b + offsetof(Block, qs)), a); }
};

template <typename B>
__m256i dot_q5(const uint8_t* b, __m256i a) {
  const __m256i q = _mm256_or_si256(unpack_nibbles(b + offsetof(B, qs)), fifth_bits(b + offsetof(B, qh)));
  return dot_u8_i8(q, a);
}

template <>
struct BlockFormat<block_q5_0> {
  using Block = block_q5_0;
  static constexpr bool kHasMin = false;
  static constexpr float kOffsetPerD = -16.0f;
  static __m256i dot(const uint8_t* b, __m256i a) { return dot_q5<Block>(b, a); }
};

template <>
struct BlockFormat<block_q5_1> {
  using Block = block_q5_1;
  static constexpr bool kHasMin = true;
  static __m256i dot(const uint8_t* b, __m256i a) { return dot_q5<Block>(b, a); }
};

template <typename Format>
constexpr bool has_offset() {
  if constexpr (Format::kHasMin) return true;
  else return Format::kOffsetPerD != 0.0f;
}

// (d_w * d_a, m * s) for a block with a min, (d_w * d_a, d_w * s) for one without.
template <typename Format>
__m128 block_scales(const uint8_t* b, const ActBlock32& a) {
  static_assert(offsetof(typename Format::Block, d) == 0);
  uint32_t head;  // d, then m or the first code bytes
  std::memcpy(&head, b, 4);
  __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(head)));
  if constexpr (!Format::kHasMin) dm = _mm_moveldup_ps(dm);
  return _mm_mul_ps(dm, _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&a))));
}

template <typename Format>
void add_block32(const uint8_t* b, const ActBlock32& a, __m256& acc, __m128& offsets) {
  const __m128 scales = block_scales<Format>(b, a);
  const __m256i isum = Format::dot(b, load256(a.qs));
  acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), _mm256_cvtepi32_ps(isum), acc);
  if constexpr (has_offset<Format>()) offsets = _mm_add_ps(offsets, scales);
}

// Two blocks per step into separate accumulators, so consecutive FMAs do not wait on each other.
template <typename Format>
float dot_blocks32(const uint8_t* row, const ActBlock32* act, int64_t nb) {
  constexpr size_t kBytes = sizeof(typename Format::Block);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m128 offsets0 = _mm_setzero_ps(), offsets1 = _mm_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    add_block32<Format>(row + i * kBytes, act[i], acc0, offsets0);
    add_block32<Format>(row + (i + 1) * kBytes, act[i + 1], acc1, offsets1);
  }
  if (i < nb) add_block32<Format>(row + i * kBytes, act[i], acc0, offsets0);
  const float sum = hsum(_mm256_add_ps(acc0, acc1));
  if constexpr (!has_offset<Format>()) return sum;
  const float offsets = _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(offsets0, offsets1)));  // lane 1
  if constexpr (Format::kHasMin) return sum + offsets;
  else return sum + Format::kOffsetPerD * offsets;
}

// ---- K-quant super-blocks ---------------------------------------------------------------------

// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block as int16 lanes, unpacked four at a
// time with 32-bit masks (the layout scale_min_k4 describes).
struct ScalesMins {
  __m128i scales, mins;
};

ScalesMins unpack_scales_mins(const uint8_t* packed) {
  uint32_t w[3];
  std::memcpy(w, packed, sizeof w);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kBits45 = 0x30303030;
  const uint32_t scales_0_3 = w[0] & kLow6, mins_0_3 = w[1] & kLow6;
  const uint32_t scales_4_7 = (w[2] & kLow4) | ((w[0] >> 2) & kBits45);  // top 2 bits from bytes 0..3
  const uint32_t mins_4_7 = ((w[2] >> 4) & kLow4) | ((w[1] >> 2) & kBits45);
  auto widen = [](uint32_t lo, uint32_t hi) {
    return _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(uint64_t{hi} << 32 | lo)));
  };
  return {widen(scales_0_3, scales_4_7), widen(mins_0_3, mins_4_7)};
}

// Int16 lane j of `scales` (a 128-bit value repeated in both lanes) in every lane.
__m256i broadcast_lane16(__m256i scales, int j) {
  return _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>((2 * j + 1) << 8 | 2 * j)));
}

// Q4_K / Q5_K: per super-block d_a * (d * sum_j scale_j * sum(q * a) - dmin * sum_j min_j * sum(a)),
// where sum(a) over sub-block j of 32 is bsums[2j] + bsums[2j + 1].
template <typename Block>
float dot_q45_K(const uint8_t* row, const ActBlock256* act, int64_t nb) {
  constexpr bool kFifthBit = std::is_same_v<Block, block_q5_K>;
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_mins = _mm_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = row + i * sizeof(Block);
    const ActBlock256& a = act[i];
    const ScalesMins sm = unpack_scales_mins(b + offsetof(Block, scales));

    const __m128i sub_block_sums = _mm_hadd_epi16(load128(a.bsums), load128(a.bsums + 8));
    const __m128 mins = _mm_cvtepi32_ps(_mm_madd_epi16(sm.mins, sub_block_sums));
    acc_mins = _mm_fmadd_ps(_mm_set1_ps(load_f16(b + offsetof(Block, dmin)) * a.d), mins, acc_mins);

    const __m256i scales = _mm256_broadcastsi128_si256(sm.scales);
    const uint8_t* qs = b + offsetof(Block, qs);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = load256(b + offsetof(Block, qh));
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles) and 2c + 1 (high)
      const __m256i packed = load256(qs + 32 * c);
      __m256i lo = low_nibbles(packed), hi = high_nibbles(packed);
      if constexpr (kFifthBit) {  // bit 0 of qh, shifted down once per sub-block, is the fifth bit
        const __m256i bit4 = _mm256_set1_epi8(0x10);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
        qh = _mm256_srli_epi16(qh, 2);
      }
      isum = _mm256_add_epi32(isum, scaled_dot_u8_i8(lo, load256(a.qs + 64 * c), broadcast_lane16(scales, 2 * c)));
      isum = _mm256_add_epi32(isum,
                              scaled_dot_u8_i8(hi, load256(a.qs + 64 * c + 32), broadcast_lane16(scales, 2 * c + 1)));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b + offsetof(Block, d)) * a.d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc) - hsum(acc_mins);
}

// Scale g of a group pair in the lower 128-bit lane and scale g + 1 in the upper one, from int16
// scales repeated in both lanes: the 32 products of one maddubs span two groups of 16.
__m256i group_pair_scales(__m256i scales, int g) {
  const auto pick = [](int j) { return _mm_set1_epi16(static_cast<short>((2 * j + 1) << 8 | 2 * j)); };
  return _mm256_shuffle_epi8(scales, _mm256_set_m128i(pick(g + 1), pick(g)));
}

// Q6_K: per super-block d * d_a * sum_g scale_g * (sum(q * a) - 32 * bsums[g]) over groups of 16,
// with the 6-bit codes q rebuilt from ql (low 4 bits) and qh (high 2 bits) as dequantize.cpp lays out.
float dot_q6_K(const uint8_t* row, const ActBlock256* act, int64_t nb) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = row + i * sizeof(block_q6_K);
    const ActBlock256& a = act[i];
    const uint8_t* scale_bytes = b + offsetof(block_q6_K, scales);

    const __m256i all_scales = _mm256_cvtepi8_epi16(load128(scale_bytes));
    const __m256i offsets = _mm256_slli_epi32(_mm256_madd_epi16(all_scales, load256(a.bsums)), 5);
    __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), offsets);

    for (int h = 0; h < 2; ++h) {  // halves of 128 elements
      const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64(
          reinterpret_cast<const __m128i*>(scale_bytes + 8 * h))));
      const uint8_t* ql = b + offsetof(block_q6_K, ql) + 64 * h;
      const __m256i ql0 = load256(ql), ql1 = load256(ql + 32);
      const __m256i qh = load256(b + offsetof(block_q6_K, qh) + 32 * h);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
          _mm256_or_si256(high_nibbles(ql0), _mm256_and_si256(qh, bits45)),
          _mm256_or_si256(high_nibbles(ql1), _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)),
      };
      for (int k = 0; k < 4; ++k)
        isum = _mm256_add_epi32(
            isum, scaled_dot_u8_i8(q[k], load256(a.qs + 128 * h + 32 * k), group_pair_scales(scales, 2 * k)));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b + offsetof(block_q6_K, d)) * a.d), _mm256_cvtepi32_ps(isum),
                          acc);
  }
  return hsum(acc);
}

// ---- activation quantization ------------------------------------------------------------------

float abs_max(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  // |x| first: max_ps returns its second operand when one is NaN, so a NaN is skipped as in scalar.
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// round(x / d) to nearest even, clamped to +-127, for 32 floats; stored in order as int8. Same
// operations as the scalar reference, so the bytes match it exactly.
void quantize32(const float* x, __m256 d, int8_t* qs) {
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + 8 * k), d), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
  }
  // The packs work per 128-bit lane, leaving 4-element groups in the order 0 2 4 6 1 3 5 7.
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), ordered);
}

// Sum of 16 signed bytes: psadbw sums unsigned bytes, so bias each by 128 first.
int sum16(const int8_t* qs) {
  const __m128i biased = _mm_xor_si128(load128(qs), _mm_set1_epi8(static_cast<char>(0x80)));
  const __m128i sad = _mm_sad_epu8(biased, _mm_setzero_si128());
  return _mm_cvtsi128_si32(sad) + _mm_extract_epi16(sad, 4) - 16 * 128;
}

// Sets d and qs of one block of n (32 or 256) elements.
void quantize_block(const float* x, int n, float& d, int8_t* qs) {
  d = abs_max(x, n) / 127.0f;
  if (d == 0.0f) {
    std::memset(qs, 0, static_cast<size_t>(n));
    return;
  }
  for (int i = 0; i < n; i += 32) quantize32(x + i, _mm256_set1_ps(d), qs + i);
}

// The kernel families of quant_dot_table.h.
struct Avx2Dots {
  template <typename Block>
  static constexpr auto blocks32 = &dot_blocks32<BlockFormat<Block>>;
  template <typename Block>
  static constexpr auto q45_K = &dot_q45_K<Block>;
  static constexpr auto q6_K = &dot_q6_K;
};

constexpr std::array<DotKernel, kDTypeCount> kDots = dot_kernel_table<Avx2Dots>();

}  // namespace

void quantize_activations(DType weight_type, const float* x, int64_t n, void* out) {
  const int64_t nb = activation_blocks(weight_type, n);
  if (activation_kind(weight_type) == ActivationKind::Blocks32) {
    auto* blocks = static_cast<ActBlock32*>(out);
    for (int64_t i = 0; i < nb; ++i) {
      ActBlock32& b = blocks[i];
      quantize_block(x + 32 * i, 32, b.d, b.qs);
      b.sum = sum16(b.qs) + sum16(b.qs + 16);
      b.s = b.d * static_cast<float>(b.sum);
    }
  } else {
    auto* blocks = static_cast<ActBlock256*>(out);
    for (int64_t i = 0; i < nb; ++i) {
      ActBlock256& b = blocks[i];
      quantize_block(x + 256 * i, 256, b.d, b.qs);
      for (int j = 0; j < 16; ++j) b.bsums[j] = static_cast<int16_t>(sum16(b.qs + 16 * j));
    }
  }
}

float dot_quantized(DType weight_type, const std::byte* row, const void* act, int64_t n) {
  const int64_t nb = activation_blocks(weight_type, n);  // rejects types without a kernel
  return kDots[static_cast<size_t>(weight_type)](row, act, nb);
}

}  // namespace baichuan::kernels::avx2
