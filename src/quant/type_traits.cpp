#include "quant/type_traits.h"

#include <array>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/quantize_k.h"

namespace baichuan::quant {
namespace {

void f32_to_float(const std::byte* src, float* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }
void f32_from_float(const float* src, std::byte* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }

template <float (*Widen)(uint16_t)>
void half_to_float(const std::byte* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = Widen(h);
  }
}

template <uint16_t (*Narrow)(float)>
void half_from_float(const float* src, std::byte* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = Narrow(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

constexpr TypeTraits with_layout(DType t, TypeTraits traits) {
  const DTypeInfo info = dtype_info(t);
  traits.name = info.name;
  traits.block_elems = info.block_elems;
  traits.block_bytes = info.block_bytes;
  return traits;
}

using enum DotActivations;

const std::array<TypeTraits, kDTypeCount> kTraits = [] {
  std::array<TypeTraits, kDTypeCount> t{};
  for (size_t i = 0; i < kDTypeCount; ++i) t[i] = with_layout(static_cast<DType>(i), {});
  auto set = [&t](DType type, TypeTraits traits) { t[static_cast<size_t>(type)] = with_layout(type, traits); };
  //                to_float                        from_float                       dot        packable
  set(DType::F32, {{}, 0, 0, f32_to_float, f32_from_float, None, false});
  set(DType::F16, {{}, 0, 0, half_to_float<f16_to_f32>, half_from_float<f32_to_f16>, None, false});
  set(DType::BF16, {{}, 0, 0, half_to_float<bf16_to_f32>, half_from_float<f32_to_bf16>, None, false});
  set(DType::Q8_0, {{}, 0, 0, dequantize_q8_0, quantize_q8_0, Blocks32, true});
  set(DType::Q4_0, {{}, 0, 0, dequantize_q4_0, quantize_q4_0, Blocks32, true});
  set(DType::Q4_1, {{}, 0, 0, dequantize_q4_1, quantize_q4_1, Blocks32, false});
  set(DType::Q5_0, {{}, 0, 0, dequantize_q5_0, quantize_q5_0, Blocks32, false});
  set(DType::Q5_1, {{}, 0, 0, dequantize_q5_1, quantize_q5_1, Blocks32, false});
  set(DType::Q4_K, {{}, 0, 0, dequantize_q4_K, quantize_q4_K, Blocks256, true});
  set(DType::Q5_K, {{}, 0, 0, dequantize_q5_K, quantize_q5_K, Blocks256, false});
  set(DType::Q6_K, {{}, 0, 0, dequantize_q6_K, quantize_q6_K, Blocks256, true});
  set(DType::NF4, {{}, 0, 0, dequantize_nf4, quantize_nf4, None, false});  // float dot: kernels/nf4_dot.h
  return t;
}();

}  // namespace

const TypeTraits& type_traits(DType t) {
  const auto i = static_cast<size_t>(t);
  if (i >= kDTypeCount) fail("unknown element type ", static_cast<int>(i));
  return kTraits[i];
}

int64_t whole_blocks(DType type, int64_t n, std::string_view doing) {
  const TypeTraits& t = type_traits(type);
  const auto block = static_cast<int64_t>(t.block_elems);
  if (n < 0 || n % block != 0)
    fail(doing, ": ", n, " elements of ", t.name, " is not a whole number of ", block, "-element blocks");
  return n / block;
}

void from_float_row(DType type, const float* src, std::byte* dst, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (!t.from_float) fail("cannot store float rows as ", t.name);
  t.from_float(src, dst, whole_blocks(type, n, "storing floats"));
}

}  // namespace baichuan::quant
