#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace baichuan {

namespace {

// The live mappings, so release_pages only ever touches file-backed memory.
struct MappingRegistry {
  std::mutex mutex;
  std::vector<std::pair<const std::byte*, size_t>> ranges;
};
MappingRegistry& registry() {
  static MappingRegistry r;
  return r;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(path, ": cannot map: ", std::strerror(err));
    }
    file->data_ = static_cast<const std::byte*>(p);
    std::lock_guard lock(registry().mutex);
    registry().ranges.emplace_back(file->data_, file->size_);
  }
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (!data_) return;
  {
    std::lock_guard lock(registry().mutex);
    auto& ranges = registry().ranges;
    std::erase(ranges, std::pair<const std::byte*, size_t>(data_, size_));
  }
  munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::release_pages(const std::byte* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (begin >= end) return;
  std::lock_guard lock(registry().mutex);
  for (auto [data, size] : registry().ranges) {
    auto lo = reinterpret_cast<uintptr_t>(data);
    if (begin >= lo && end <= lo + size) {
      madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
      return;
    }
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace baichuan
