#include "convert/random_init.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "convert/gguf_convert.h"
#include "core/error.h"
#include "core/half.h"
#include "core/splitmix64.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "model/checkpoint.h"
#include "quant/blocks.h"
#include "quant/type_traits.h"

namespace baichuan {

namespace {

// Random blocks of a quantized type, written directly (no float detour): the quant bytes are uniform
// random and every block gets the same scale fields, chosen so the dequantized values have mean about
// zero and standard deviation about `stddev`, like the float init. Much faster than quantizing floats.
class RandomBlocks {
 public:
  RandomBlocks(DType type, float stddev) : block_bytes_(dtype_info(type).block_bytes) {
    using namespace quant;
    // Uniform q in [0, 2^bits): variance (4^bits - 1) / 12, mean (2^bits - 1) / 2.
    auto variance = [](int bits) { return (std::pow(4.0, bits) - 1) / 12; };
    auto put_f16 = [this](size_t offset, double v) {
      uint16_t h = f32_to_f16(static_cast<float>(v));
      std::memcpy(header_.data() + offset, &h, 2);
    };
    // The symmetric types (q - 2^(bits-1), mean -1/2) get a random sign of d per block, so the values
    // are centred; its sign bit is the top bit of the f16's second byte.
    switch (type) {
      case DType::Q8_0:  // x = d * q, q an int8
        put_f16(offsetof(block_q8_0, d), stddev / std::sqrt(variance(8) + 0.25));
        fixed_ = {0, 2};
        sign_byte_ = offsetof(block_q8_0, d) + 1;
        break;
      case DType::Q4_0:  // x = d * (q - 8)
        put_f16(offsetof(block_q4_0, d), stddev / std::sqrt(variance(4) + 0.25));
        fixed_ = {0, 2};
        sign_byte_ = offsetof(block_q4_0, d) + 1;
        break;
      case DType::Q5_0:  // x = d * (q - 16)
        put_f16(offsetof(block_q5_0, d), stddev / std::sqrt(variance(5) + 0.25));
        fixed_ = {0, 2};
        sign_byte_ = offsetof(block_q5_0, d) + 1;
        break;
      case DType::Q4_1:
      case DType::Q5_1: {  // x = d * q + m, m centring the values
        int bits = type == DType::Q4_1 ? 4 : 5;
        double d = stddev / std::sqrt(variance(bits));
        put_f16(0, d);
        put_f16(2, -d * (std::pow(2.0, bits) - 1) / 2);
        fixed_ = {0, 4};
        break;
      }
      case DType::Q4_K:
      case DType::Q5_K: {  // x = d * scale * q - dmin * min, all 6-bit scales and mins 32
        static_assert(offsetof(block_q4_K, scales) == offsetof(block_q5_K, scales));
        int bits = type == DType::Q4_K ? 4 : 5;
        const int scale = 32, min = 32;
        double d = stddev / (scale * std::sqrt(variance(bits)));
        put_f16(offsetof(block_q4_K, d), d);
        put_f16(offsetof(block_q4_K, dmin), d * scale * (std::pow(2.0, bits) - 1) / 2 / min);
        std::byte* scales = header_.data() + offsetof(block_q4_K, scales);
        for (int j = 0; j < 4; ++j) {  // the packing scale_min_k4 reads, for sub-blocks j and j + 4
          scales[j] = std::byte((scale & 63) | ((scale >> 4) << 6));
          scales[j + 4] = std::byte((min & 63) | ((min >> 4) << 6));
          scales[j + 8] = std::byte((scale & 15) | ((min & 15) << 4));
        }
        fixed_ = {0, offsetof(block_q4_K, scales) + kScaleBytesK};
        break;
      }
      case DType::Q6_K: {  // x = d * scale * (q - 32), all int8 scales 32
        const int scale = 32;
        for (size_t j = 0; j < sizeof(block_q6_K::scales); ++j)
          header_[offsetof(block_q6_K, scales) + j] = std::byte(scale);
        put_f16(offsetof(block_q6_K, d), stddev / (scale * std::sqrt(variance(6) + 0.25)));
        fixed_ = {offsetof(block_q6_K, scales), sizeof(block_q6_K) - offsetof(block_q6_K, scales)};
        sign_byte_ = offsetof(block_q6_K, d) + 1;
        break;
      }
      default: fail("init: no random blocks for ", dtype_name(type));
    }
  }

  // Fills `nbytes` (whole blocks) at `out` from the random stream `state`.
  void fill(uint64_t& state, std::byte* out, size_t nbytes) const {
    size_t i = 0;
    for (; i + 8 <= nbytes; i += 8) {
      uint64_t r = splitmix64(state);
      std::memcpy(out + i, &r, 8);
    }
    if (i < nbytes) {
      uint64_t r = splitmix64(state);
      std::memcpy(out + i, &r, nbytes - i);
    }
    uint64_t signs = 0;
    for (size_t b = 0, k = 0; b < nbytes; b += block_bytes_, ++k) {
      std::memcpy(out + b + fixed_.offset, header_.data() + fixed_.offset, fixed_.size);
      if (!sign_byte_) continue;
      if (k % 64 == 0) signs = splitmix64(state);
      out[b + *sign_byte_] ^= std::byte((signs >> (k % 64) & 1) << 7);
    }
  }

 private:
  struct Range {
    size_t offset = 0, size = 0;
  };
  size_t block_bytes_;
  std::array<std::byte, 512> header_{};  // a block whose fixed_ bytes are the scale fields
  Range fixed_;
  std::optional<size_t> sign_byte_;  // byte whose top bit is the sign of d, for the symmetric types
};

}  // namespace

// The sum of four 16-bit uniforms, centred and scaled (Irwin-Hall): plenty for random test weights
// and much faster than exact methods.
float approx_normal(uint64_t& state) {
  uint64_t r = splitmix64(state);
  float sum = 0;
  for (int i = 0; i < 4; ++i) sum += static_cast<float>((r >> (16 * i)) & 0xffff) / 65535.0f;
  return (sum - 2.0f) * std::sqrt(3.0f);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

void fill_random_bytes(uint64_t seed, std::byte* out, size_t first, size_t n) {
  for (size_t i = 0; i < n;) {
    const size_t word = (first + i) / 8, at = (first + i) % 8;
    uint64_t state = seed + word * 0x2545f4914f6cdd1dULL;
    const uint64_t r = splitmix64(state);
    const size_t take = std::min(n - i, 8 - at);
    std::memcpy(out + i, reinterpret_cast<const std::byte*>(&r) + at, take);
    i += take;
  }
}

void write_random_gguf(const std::string& path, const ModelConfig& config, const Tokenizer& tokenizer,
                       const std::string& generation_json, const RandomGgufOptions& options, ThreadPool& pool) {
  std::vector<gguf::TensorToWrite> tensors;
  for (const auto& [name, shape] : canonical_tensors(config)) {
    gguf::TensorToWrite t;
    t.name = name;
    t.shape = shape;
    t.dtype = tensor_type_for(options.type, name, shape, config);
    bool is_matrix = shape.size() == 2;
    uint64_t seed = options.seed ^ hash_name(name);
    float stddev = options.stddev;
    t.produce = [shape = shape, is_matrix, seed, stddev, &pool, dtype = t.dtype, name = name](std::byte* out, size_t) {
      int64_t rows = is_matrix ? shape[0] : 1, cols = shape.back();
      size_t row_bytes = bytes_for(dtype, cols, name);
      std::optional<RandomBlocks> blocks;
      if (is_quantized(dtype)) blocks.emplace(dtype, stddev);
      pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
        std::vector<float> row(blocks ? 0 : static_cast<size_t>(cols));
        for (int64_t r = begin; r < end; ++r) {
          uint64_t state = seed + static_cast<uint64_t>(r) * 0x2545f4914f6cdd1dULL;
          std::byte* dst = out + static_cast<size_t>(r) * row_bytes;
          if (blocks) {
            blocks->fill(state, dst, row_bytes);
            continue;
          }
          for (auto& v : row) v = is_matrix ? stddev * approx_normal(state) : 1.0f;  // norms start at one
          quant::from_float_row(dtype, row.data(), dst, cols);
        }
      });
    };
    tensors.push_back(std::move(t));
  }
  gguf::write_file(path, gguf_metadata(config, tokenizer, generation_json, options.type, options.name,
                                      /*head_normalized=*/false),
                   tensors);
}

}  // namespace baichuan
