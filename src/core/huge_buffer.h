// Anonymous memory for large, long-lived arrays (packed weights), asking the kernel for transparent
// huge pages: decoding streams gigabytes per token, and 2 MiB pages cut the TLB misses of that
// stream. Pages are committed when first written. Move-only RAII.
#pragma once
#include <cstddef>

namespace baichuan {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t bytes);  // throws Error when the memory cannot be mapped
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& other) noexcept;
  HugeBuffer& operator=(HugeBuffer&& other) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0, mapped_ = 0;
};

}  // namespace baichuan
