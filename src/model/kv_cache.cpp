#include "model/kv_cache.h"

#include "core/error.h"

namespace baichuan {

KvCache::KvCache(const ModelConfig& config, int64_t capacity) : hidden_(config.hidden_size), capacity_(capacity) {
  if (capacity <= 0) fail("KV cache capacity must be positive, got ", capacity);
  auto n = static_cast<size_t>(config.num_layers * capacity * config.hidden_size);
  keys_.resize(n);
  values_.resize(n);
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > size_) fail("KV cache: cannot truncate ", size_, " positions to ", n);
  size_ = n;
}

}  // namespace baichuan
