#include "model/kv_cache.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "core/system_memory.h"
#include "core/tensor.h"
#include "quant/type_traits.h"

namespace baichuan {

KvCache::KvCache(const ModelConfig& config, int64_t capacity, DType type)
    : type_(type), hidden_(config.hidden_size), capacity_(capacity) {
  if (capacity <= 0) fail("KV cache capacity must be positive, got ", capacity);
  if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0)
    fail("KV cache type ", dtype_name(type), " is not supported (use f32, f16 or q8_0)");
  const int64_t head_dim = config.head_dim();
  if (is_quantized(type) && head_dim % static_cast<int64_t>(dtype_info(type).block_elems) != 0)
    fail("a ", dtype_name(type), " KV cache needs a head size that is a multiple of ", dtype_info(type).block_elems,
         "; this model's is ", head_dim);
  check_kv_cache_fits(config, capacity, type);
  head_bytes_ = bytes_for(type, head_dim, "KV cache head");
  row_bytes_ = bytes_for(type, hidden_, "KV cache row");
  const size_t n = static_cast<size_t>(config.num_layers * capacity) * row_bytes_;
  // Not zero-filled: pages are committed only when a position is written.
  keys_ = std::make_unique_for_overwrite<std::byte[]>(n);
  values_ = std::make_unique_for_overwrite<std::byte[]>(n);
}

void KvCache::store(int64_t layer, int64_t pos, const float* key, const float* value) {
  quant::from_float_row(type_, key, keys_.get() + offset(layer, pos), hidden_);
  quant::from_float_row(type_, value, values_.get() + offset(layer, pos), hidden_);
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > size_) fail("KV cache: cannot truncate ", size_, " positions to ", n);
  size_ = n;
}

double kv_cache_bytes(const ModelConfig& config, int64_t capacity, DType type, int64_t count) {
  const double row_bytes = static_cast<double>(bytes_for(type, config.hidden_size, "KV cache row"));
  return 2.0 * static_cast<double>(count) * static_cast<double>(config.num_layers) * static_cast<double>(capacity) *
         row_bytes;
}

void check_kv_cache_fits(const ModelConfig& config, int64_t capacity, DType type, int64_t count) {
  const double need = kv_cache_bytes(config, capacity, type, count);
  const uint64_t have = physical_memory_bytes();
  if (have > 0 && need > static_cast<double>(have))
    fail(count > 1 ? std::to_string(count) + " KV caches" : std::string("a KV cache"), " of ", capacity, " positions (",
         dtype_name(type), ", ", config.num_layers, " layers) would need ", gibibytes(need), ", more than the ",
         gibibytes(static_cast<double>(have)), " of memory of this machine: use a smaller context (--ctx)",
         count > 1 ? " or fewer slots (--parallel)" : "");
}

DType parse_kv_type(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "f32") return DType::F32;
  if (lower == "f16") return DType::F16;
  if (lower == "q8_0") return DType::Q8_0;
  fail("unknown KV cache type '", name, "' (use f32, f16 or q8_0)");
}

}  // namespace baichuan
