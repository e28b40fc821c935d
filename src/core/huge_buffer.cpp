#include "core/huge_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace baichuan {

namespace {
constexpr size_t kHugePage = size_t{2} << 20, kSmallPage = 4096;
}

HugeBuffer::HugeBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Over-map by one huge page so the start can be aligned to one (THP needs aligned 2 MiB ranges).
  // The end is only rounded to small pages: a huge page over the tail would commit up to 2 MiB
  // that is never used.
  const size_t kept = (bytes + kSmallPage - 1) / kSmallPage * kSmallPage;
  mapped_ = kept + kHugePage;
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("cannot allocate ", bytes, " bytes: ", std::strerror(errno));
  auto base = reinterpret_cast<uintptr_t>(p);
  auto aligned = (base + kHugePage - 1) / kHugePage * kHugePage;
  // Give back the unaligned head and the unused tail, keeping [aligned, aligned + rounded size).
  const size_t head = aligned - base;
  if (head > 0) munmap(p, head);
  if (kHugePage - head > 0) munmap(reinterpret_cast<void*>(aligned + kept), kHugePage - head);
  mapped_ = kept;
  data_ = reinterpret_cast<std::byte*>(aligned);
  madvise(data_, mapped_, MADV_HUGEPAGE);  // advisory: plain pages if the kernel says no
}

HugeBuffer::~HugeBuffer() {
  if (data_) munmap(data_, mapped_);
}

HugeBuffer::HugeBuffer(HugeBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) munmap(data_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

}  // namespace baichuan
