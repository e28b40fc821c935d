#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace baichuan {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_path_ = path_ + ".tmp" + std::to_string(getpid());
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) fail(path_, ": cannot create: ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (!file_) fail(path_, ": write after commit");
  if (n && std::fwrite(data, 1, n, file_) != n) fail(path_, ": write failed: ", std::strerror(errno));
  written_ += n;
}

void AtomicFile::pad_to(size_t alignment) {
  static const std::vector<char> zeros(4096, 0);
  size_t pad = (alignment - written_ % alignment) % alignment;
  while (pad > 0) {
    size_t n = pad < zeros.size() ? pad : zeros.size();
    write(zeros.data(), n);
    pad -= n;
  }
}

void AtomicFile::commit() {
  if (!file_) fail(path_, ": committed twice");
  bool ok = std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok || std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp_path_.c_str());
    fail(path_, ": cannot finish writing: ", std::strerror(err));
  }
}

}  // namespace baichuan
