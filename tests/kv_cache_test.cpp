// The KV cache in each of its types: what is stored reads back within the type's rounding, a
// quantized cache needs whole blocks per head, and bad sizes or types are refused with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "error_matchers.h"
#include "kernels/vec.h"
#include "model/kv_cache.h"

namespace baichuan {
namespace kv_cache_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error;

ModelConfig shape(int64_t hidden, int64_t heads) {
  ModelConfig c;
  c.hidden_size = hidden;
  c.num_heads = heads;
  c.num_layers = 2;
  return c;
}

TEST(KvCache, StoredRowsReadBackWithinTheTypeRounding) {
  const ModelConfig cfg = shape(128, 2);  // head size 64: two Q8_0 blocks per head
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> k(128), v(128), back(128);
  for (DType type : {DType::F32, DType::F16, DType::Q8_0}) {
    KvCache cache(cfg, 5, type);
    EXPECT_EQ(cache.type(), type);
    for (int64_t layer = 0; layer < 2; ++layer)
      for (int64_t pos = 0; pos < 5; ++pos) {
        for (size_t i = 0; i < 128; ++i) k[i] = normal(rng), v[i] = normal(rng);
        cache.store(layer, pos, k.data(), v.data());
        for (auto [stored, want] : {std::pair{cache.key(layer, pos), &k}, {cache.value(layer, pos), &v}}) {
          kernels::row_to_f32(type, stored, back.data(), 128);
          for (int64_t block = 0; block < 4; ++block) {  // Q8_0: error <= half a step of the block's scale
            float amax = 0;
            for (int64_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs((*want)[static_cast<size_t>(block * 32 + i)]));
            for (int64_t i = block * 32; i < block * 32 + 32; ++i) {
              float x = (*want)[static_cast<size_t>(i)], tol = type == DType::F32   ? 0.0f
                                                             : type == DType::F16 ? std::abs(x) / 1024
                                                                                  : amax / 127 * 0.51f + 1e-3f * amax;
              EXPECT_NEAR(back[static_cast<size_t>(i)], x, tol) << dtype_name(type) << " element " << i;
            }
          }
        }
      }
    // Head h of a row starts at head_offset(h): the second head of a Q8_0 row is two blocks in.
    EXPECT_EQ(cache.head_offset(1), type == DType::Q8_0 ? 2 * 34u : 64 * (type == DType::F32 ? 4u : 2u));
  }
}

TEST(KvCache, RefusesWhatItCannotHold) {
  EXPECT_THAT([] { KvCache(shape(64, 4), 8, DType::Q8_0); }, throws_error("head size"))
      << "head size 16 is not whole Q8_0 blocks";
  EXPECT_THAT([] { KvCache(shape(64, 2), 8, DType::Q4_0); }, throws_error("Q4_0"));
  EXPECT_THAT([] { KvCache(shape(64, 2), 0); }, throws_error("capacity"));
  EXPECT_EQ(parse_kv_type("F16"), DType::F16);
  EXPECT_EQ(parse_kv_type("q8_0"), DType::Q8_0);
  EXPECT_THAT([] { parse_kv_type("q4"); }, throws_error("'q4'"));
}

TEST(KvCache, TruncateKeepsAPrefix) {
  KvCache cache(shape(64, 2), 8);
  EXPECT_EQ(cache.type(), DType::F16) << "F16 is the default, as in llama.cpp";
  cache.advance(5);
  cache.truncate(3);
  EXPECT_EQ(cache.size(), 3);
  EXPECT_THROW(cache.truncate(4), Error);
}

}  // namespace
}  // namespace baichuan
