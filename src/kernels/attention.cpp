#include "kernels/attention.h"

#include <cmath>
#include <limits>
#include <memory>

#include "core/error.h"
#include "kernels/attention_kernel.h"
#include "kernels/cpu.h"

namespace baichuan::kernels {

namespace {

// The scalar path's "vector": one float. std::exp, so it is the plain version the SIMD ones follow.
struct ScalarLane {
  using reg = float;
  static constexpr int64_t kWidth = 1;
  static reg zero() { return 0.0f; }
  static reg set1(float x) { return x; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg x) { *p = x; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg exp(reg x) { return std::exp(x); }
  static float reduce_add(reg x) { return x; }
  static reg iota() { return 0.0f; }
  static reg keep_at_or_after(reg qpos, reg jpos, reg s) {
    return qpos >= jpos ? s : -std::numeric_limits<float>::infinity();
  }
};

}  // namespace

int64_t attention_scratch_floats(int64_t head_dim) {
  const int64_t dp = attention_detail::padded(head_dim, attention_detail::kPadTo);
  return 4 * kAttentionKeyTile * dp + kAttentionKeyTile * kAttentionQueryTile + 3 * kAttentionQueryTile +
         16;  // + alignment slack
}

AttentionScratch attention_scratch(float* base, int64_t head_dim) {
  const int64_t dp = attention_detail::padded(head_dim, attention_detail::kPadTo);
  float* p = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(base) + 63) & ~uintptr_t{63});
  AttentionScratch s{};
  auto take = [&](int64_t n) {
    float* r = p;
    p += n;
    return r;
  };
  s.queries = take(kAttentionQueryTile * dp);
  s.keys = take(kAttentionKeyTile * dp);
  s.values = take(kAttentionKeyTile * dp);
  s.out = take(kAttentionQueryTile * dp);
  s.scores = take(kAttentionKeyTile * kAttentionQueryTile);
  s.row_max = take(kAttentionQueryTile);
  s.row_sum = take(kAttentionQueryTile);
  s.rescale = take(kAttentionQueryTile);
  return s;
}

namespace scalar {
void attend(const AttentionHead& head, const AttentionScratch& scratch) {
  attention_detail::attend_blocked<ScalarLane>(head, scratch);
}
}  // namespace scalar

void attend(const AttentionHead& head) {
  if (head.n_queries < 1 || head.n_queries > kAttentionQueryTile)
    fail("attention: ", head.n_queries, " query rows in one call (1 to ", kAttentionQueryTile, ")");
  if (head.head_dim <= 0 || head.pos0 < 0) fail("attention: head size ", head.head_dim, ", first position ", head.pos0);
  thread_local std::unique_ptr<float[]> buffer;
  thread_local int64_t buffer_floats = 0;
  const int64_t need = attention_scratch_floats(head.head_dim);
  if (buffer_floats < need) {
    buffer = std::make_unique_for_overwrite<float[]>(static_cast<size_t>(need));
    buffer_floats = need;
  }
  const AttentionScratch scratch = attention_scratch(buffer.get(), head.head_dim);
  switch (active_backend()) {
    case Backend::Avx512: return avx512::attend(head, scratch);
    case Backend::Avx2: return avx2::attend(head, scratch);
    case Backend::Scalar: return scalar::attend(head, scratch);
  }
}

}  // namespace baichuan::kernels
