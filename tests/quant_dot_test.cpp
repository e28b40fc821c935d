// Quantized dot products: the scalar reference against a double-precision dot of the dequantized
// weights with the dequantized activations, the AVX2 version against the scalar one, for every
// weight type, several row lengths, odd row addresses, worst-case codes; activation quantization
// error bounds; errors for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu.h"
#include "kernels/quant_dot.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "random_inputs.h"

namespace baichuan::kernels {
namespace quant_dot_test {  // named, not anonymous: the tests compile as a unity build
using baichuan::testing::random_floats;

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                        DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool simd_available() {
  const auto& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}

int64_t block_elems(DType t) { return static_cast<int64_t>(dtype_info(t).block_elems); }

// Row lengths in blocks: one, a few, and the widths of Baichuan 2 7B's matrices (4096, 11008).
std::vector<int64_t> block_counts(DType t) {
  if (activation_kind(t) == ActivationKind::Blocks32) return {1, 3, 4096 / 32, 11008 / 32};
  return {1, 3, 16, 43};
}

// +-1 at random: every activation code is then +-127, the worst case for int16 overflow.
std::vector<float> random_signs(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = (rng() & 1) ? 1.0f : -1.0f;
  return v;
}

void put_f16(std::byte* p, float value) {
  const uint16_t h = f32_to_f16(value);
  std::memcpy(p, &h, 2);
}

// Random block bytes (every code pattern, including Q8_0's -128 and negative Q6_K scales) with sane
// f16 scales: small positive d and dmin, small signed m.
std::vector<std::byte> random_blocks(DType t, int64_t nb, uint32_t seed) {
  using namespace quant;
  const size_t bytes = dtype_info(t).block_bytes;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> positive(0.001f, 0.02f), signed_min(-0.05f, 0.05f);
  std::vector<std::byte> out(static_cast<size_t>(nb) * bytes);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  for (int64_t i = 0; i < nb; ++i) {
    std::byte* b = out.data() + static_cast<size_t>(i) * bytes;
    switch (t) {
      case DType::Q4_1: put_f16(b + offsetof(block_q4_1, m), signed_min(rng)); [[fallthrough]];
      case DType::Q8_0:
      case DType::Q4_0:
      case DType::Q5_0: put_f16(b, positive(rng)); break;  // d comes first
      case DType::Q5_1:
        put_f16(b + offsetof(block_q5_1, d), positive(rng));
        put_f16(b + offsetof(block_q5_1, m), signed_min(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:  // d and dmin lead both layouts
        put_f16(b + offsetof(block_q4_K, d), positive(rng));
        put_f16(b + offsetof(block_q4_K, dmin), positive(rng));
        break;
      case DType::Q6_K: put_f16(b + offsetof(block_q6_K, d), positive(rng)); break;
      default: break;
    }
  }
  return out;
}

// True for the bytes of a block's f16 fields (d, m, dmin), which random_blocks keeps sane.
bool is_f16_scale_byte(DType t, size_t offset_in_block) {
  switch (t) {
    case DType::Q6_K: return offset_in_block >= offsetof(quant::block_q6_K, d);
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K: return offset_in_block < 4;
    default: return offset_in_block < 2;
  }
}

// Weights as quantize_row writes them where it can, else random blocks.
std::vector<std::byte> quantized_weights(DType t, int64_t nb, uint32_t seed) {
  if (!quant::can_quantize(t)) return random_blocks(t, nb, seed);
  const auto x = random_floats(nb * block_elems(t), seed, 0.05f);
  std::vector<std::byte> out(static_cast<size_t>(nb) * dtype_info(t).block_bytes);
  quant::quantize_row(t, x.data(), out.data(), nb * block_elems(t));
  return out;
}

// Quantized activations in a float-aligned buffer, by one backend's kernel (the scalar reference
// unless told).
std::vector<float> quantize(DType t, const std::vector<float>& x, Backend backend = Backend::Scalar) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> buf(activation_bytes(t, n) / sizeof(float));
  switch (backend) {
    case Backend::Avx512: avx512::quantize_activations(t, x.data(), n, buf.data()); break;
    case Backend::Avx2: avx2::quantize_activations(t, x.data(), n, buf.data()); break;
    default: scalar::quantize_activations(t, x.data(), n, buf.data()); break;
  }
  return buf;
}

// The SIMD backends this CPU can run.
std::vector<Backend> simd_backends() {
  std::vector<Backend> out;
  for (Backend b : {Backend::Avx2, Backend::Avx512})
    if (backend_supported(b)) out.push_back(b);
  return out;
}

// Activation buffers hold codes, not floats (some bit patterns are NaNs): compare their bytes.
bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// d * qs, element by element.
std::vector<double> dequantize_activations(DType t, const std::vector<float>& act, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n));
  if (activation_kind(t) == ActivationKind::Blocks32) {
    const auto* blocks = reinterpret_cast<const ActBlock32*>(act.data());
    for (int64_t i = 0; i < n; ++i) out[i] = double{blocks[i / 32].d} * blocks[i / 32].qs[i % 32];
  } else {
    const auto* blocks = reinterpret_cast<const ActBlock256*>(act.data());
    for (int64_t i = 0; i < n; ++i) out[i] = double{blocks[i / 256].d} * blocks[i / 256].qs[i % 256];
  }
  return out;
}

struct Reference {
  double dot = 0, magnitude = 0;  // magnitude: sum of |w_i * a_i|, the scale of rounding errors
  double tolerance() const { return 1e-5 * magnitude + 1e-6; }
};

Reference reference_dot(DType t, const std::vector<std::byte>& w, const std::vector<float>& act, int64_t n) {
  std::vector<float> wf(static_cast<size_t>(n));
  quant::dequantize_row(t, w.data(), wf.data(), n);
  const auto a = dequantize_activations(t, act, n);
  Reference r;
  for (int64_t i = 0; i < n; ++i) {
    r.dot += wf[i] * a[i];
    r.magnitude += std::abs(wf[i] * a[i]);
  }
  return r;
}

// One case: scalar against the double reference, AVX2 against scalar, and both unchanged when
// the row starts at an odd address.
void check_dot(DType t, const std::vector<std::byte>& w, const std::vector<float>& x, const char* what) {
  const auto n = static_cast<int64_t>(x.size());
  SCOPED_TRACE(::testing::Message() << dtype_name(t) << " " << what << " n=" << n);
  const auto act = quantize(t, x);
  const Reference ref = reference_dot(t, w, act, n);
  const float got = scalar::dot_quantized(t, w.data(), act.data(), n);
  EXPECT_NEAR(got, ref.dot, ref.tolerance());

  std::vector<std::byte> odd(w.size() + 1);
  std::memcpy(odd.data() + 1, w.data(), w.size());
  EXPECT_EQ(scalar::dot_quantized(t, odd.data() + 1, act.data(), n), got);

  if (!simd_available()) return;
  const float simd = avx2::dot_quantized(t, w.data(), act.data(), n);
  EXPECT_NEAR(simd, got, ref.tolerance());
  EXPECT_EQ(avx2::dot_quantized(t, odd.data() + 1, act.data(), n), simd);
}

TEST(QuantDot, EveryTypeMatchesDequantizedReference) {
  uint32_t seed = 1;
  for (DType t : kTypes) {
    for (int64_t nb : block_counts(t)) {
      const int64_t n = nb * block_elems(t);
      seed += 4;
      check_dot(t, quantized_weights(t, nb, seed), random_floats(n, seed + 1), "quantized weights");
      check_dot(t, random_blocks(t, nb, seed + 2), random_floats(n, seed + 3, 3.0f), "random blocks");
    }
  }
}

TEST(QuantDot, WorstCaseCodesDoNotOverflow) {
  uint32_t seed = 100;
  for (DType t : kTypes) {
    const int64_t nb = block_counts(t)[1];
    seed += 2;
    check_dot(t, random_blocks(t, nb, seed), random_signs(nb * block_elems(t), seed + 1), "+-127 activations");
    // Every code byte 0x80 (Q8_0: -128) or 0xFF (every code, scale and min at its maximum).
    for (uint8_t fill : {uint8_t{0x80}, uint8_t{0xFF}}) {
      auto w = random_blocks(t, nb, ++seed);
      for (size_t i = 0; i < w.size(); ++i)
        if (!is_f16_scale_byte(t, i % dtype_info(t).block_bytes)) w[i] = std::byte{fill};
      check_dot(t, w, random_signs(nb * block_elems(t), ++seed), "saturated codes");
    }
  }
}

TEST(QuantDot, DispatcherFollowsActiveBackend) {
  const Backend saved = active_backend();
  for (DType t : kTypes) {
    const int64_t nb = 3, n = nb * block_elems(t);
    const auto w = random_blocks(t, nb, 7);
    const auto x = random_floats(n, 8);
    set_backend(Backend::Scalar);
    std::vector<float> act(activation_bytes(t, n) / sizeof(float));
    quantize_activations(t, x.data(), n, act.data());
    EXPECT_TRUE(same_bytes(act, quantize(t, x)));
    EXPECT_EQ(dot_quantized(t, w.data(), act.data(), n), scalar::dot_quantized(t, w.data(), act.data(), n));
    if (simd_available()) {
      set_backend(Backend::Avx2);
      EXPECT_EQ(dot_quantized(t, w.data(), act.data(), n), avx2::dot_quantized(t, w.data(), act.data(), n));
    }
    if (backend_supported(Backend::Avx512)) {  // its own quantization, the AVX2 row dots
      set_backend(Backend::Avx512);
      std::vector<float> act512(act.size());
      quantize_activations(t, x.data(), n, act512.data());
      EXPECT_TRUE(same_bytes(act512, quantize(t, x, Backend::Avx512)));
      EXPECT_EQ(dot_quantized(t, w.data(), act.data(), n), avx2::dot_quantized(t, w.data(), act.data(), n));
    }
  }
  set_backend(saved);
}

// |x - d * q| <= d / 2 with d = amax / 127; s and bsums are the sums of the codes; SIMD writes the
// same bytes as scalar.
TEST(QuantDot, ActivationQuantizationErrorIsHalfAStep) {
  for (DType t : {DType::Q4_0, DType::Q4_K}) {
    const int64_t block = activation_kind(t) == ActivationKind::Blocks32 ? 32 : 256;
    const int64_t n = 4 * block;
    auto x = random_floats(n, 42, 2.0f);
    for (int64_t i = block; i < 2 * block; ++i) x[i] = 0.0f;          // an all-zero block
    for (int64_t i = 2 * block; i < 3 * block; ++i) x[i] *= 1e-30f;   // a tiny one
    const auto act = quantize(t, x);
    for (int64_t b = 0; b < n / block; ++b) {
      SCOPED_TRACE(::testing::Message() << dtype_name(t) << " block " << b);
      float amax = 0.0f;
      for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::abs(x[b * block + i]));
      const int8_t* qs;
      float d;
      if (block == 32) {
        const auto& a = reinterpret_cast<const ActBlock32*>(act.data())[b];
        qs = a.qs, d = a.d;
        int sum = 0;
        for (int i = 0; i < 32; ++i) sum += qs[i];
        EXPECT_EQ(a.s, d * static_cast<float>(sum));
      } else {
        const auto& a = reinterpret_cast<const ActBlock256*>(act.data())[b];
        qs = a.qs, d = a.d;
        for (int j = 0; j < 16; ++j) {
          int sum = 0;
          for (int i = 0; i < 16; ++i) sum += qs[16 * j + i];
          EXPECT_EQ(a.bsums[j], sum);
        }
      }
      EXPECT_EQ(d, amax / 127.0f);
      for (int64_t i = 0; i < block; ++i) {
        const float xi = x[b * block + i];
        EXPECT_LE(std::abs(xi - d * qs[i]), d * 0.5f * (1 + 1e-4f) + 1e-37f) << i;
        if (d == 0.0f) {
          EXPECT_EQ(qs[i], 0);
        }
      }
    }
    for (Backend b : simd_backends()) EXPECT_TRUE(same_bytes(quantize(t, x, b), act)) << backend_name(b);
  }
}

TEST(QuantDot, SimdQuantizationMatchesScalarOnEveryLength) {
  if (simd_backends().empty()) GTEST_SKIP() << "no AVX2";
  for (Backend b : simd_backends())
    for (DType t : kTypes)
      for (int64_t nb : block_counts(t)) {
        const auto x = random_floats(nb * block_elems(t), static_cast<uint32_t>(nb), 5.0f);
        EXPECT_TRUE(same_bytes(quantize(t, x, b), quantize(t, x))) << backend_name(b) << " " << dtype_name(t) << " " << nb;
      }
}

TEST(QuantDot, KindsAndSizes) {
  EXPECT_EQ(activation_kind(DType::Q8_0), ActivationKind::Blocks32);
  EXPECT_EQ(activation_kind(DType::Q5_1), ActivationKind::Blocks32);
  EXPECT_EQ(activation_kind(DType::Q4_K), ActivationKind::Blocks256);
  EXPECT_EQ(activation_kind(DType::Q6_K), ActivationKind::Blocks256);
  EXPECT_EQ(activation_bytes(DType::Q4_0, 4096), 128 * sizeof(ActBlock32));
  EXPECT_EQ(activation_bytes(DType::Q6_K, 4096), 16 * sizeof(ActBlock256));
  EXPECT_EQ(activation_bytes(DType::Q8_0, 0), 0u);
}

TEST(QuantDot, BadInputThrows) {
  std::vector<float> x(512, 1.0f), act(1024);
  std::vector<std::byte> row(1024);
  for (DType t : {DType::F32, DType::F16, DType::Q8_1, DType::Q2_K, DType::Q3_K, DType::Q8_K}) {
    EXPECT_THROW(activation_kind(t), Error) << dtype_name(t);
    EXPECT_THROW(activation_bytes(t, 256), Error) << dtype_name(t);
    EXPECT_THROW(quantize_activations(t, x.data(), 256, act.data()), Error) << dtype_name(t);
    EXPECT_THROW(dot_quantized(t, row.data(), act.data(), 256), Error) << dtype_name(t);
  }
  for (auto [t, n] : {std::pair{DType::Q4_0, int64_t{33}}, {DType::Q8_0, int64_t{-32}}, {DType::Q4_K, int64_t{128}},
                      {DType::Q6_K, int64_t{300}}}) {
    EXPECT_THROW(activation_bytes(t, n), Error) << dtype_name(t) << " " << n;
    EXPECT_THROW(scalar::quantize_activations(t, x.data(), n, act.data()), Error);
    EXPECT_THROW(scalar::dot_quantized(t, row.data(), act.data(), n), Error);
    if (simd_available()) {
      EXPECT_THROW(avx2::quantize_activations(t, x.data(), n, act.data()), Error);
      EXPECT_THROW(avx2::dot_quantized(t, row.data(), act.data(), n), Error);
    }
    if (backend_supported(Backend::Avx512)) {
      EXPECT_THROW(avx512::quantize_activations(t, x.data(), n, act.data()), Error);
    }
  }
}

// NF4 has no integer dot product: its weights multiply float activations exactly (nf4_dot_test.cpp).
TEST(QuantDotNf4, HasNoIntegerDotProduct) {
  EXPECT_THROW(activation_kind(DType::NF4), Error);
  std::vector<float> x(64, 1.0f), act(64);
  std::vector<std::byte> row(36);
  EXPECT_THROW(scalar::quantize_activations(DType::NF4, x.data(), 64, act.data()), Error);
  EXPECT_THROW(scalar::dot_quantized(DType::NF4, row.data(), act.data(), 64), Error);
}

}  // namespace
}  // namespace baichuan::kernels
