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

void AtomicFile::skip_to(size_t offset) {
  if (!file_) fail(path_, ": write after commit");
  if (offset < written_) fail(path_, ": cannot skip back to byte ", offset, " after writing ", written_);
  if (fseeko(file_, static_cast<off_t>(offset), SEEK_SET) != 0) fail(path_, ": seek failed: ", std::strerror(errno));
  written_ = offset;
}

void AtomicFile::write_at(size_t offset, const void* data, size_t n) {
  if (!file_) fail(path_, ": write after commit");
  if (offset + n > written_) fail(path_, ": write at byte ", offset, " past the ", written_, " bytes written");
  if (std::fflush(file_) != 0) fail(path_, ": write failed: ", std::strerror(errno));
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = pwrite(fileno(file_), p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(path_, ": write failed: ", std::strerror(errno));
    p += w;
    offset += static_cast<size_t>(w);
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (!file_) fail(path_, ": committed twice");
  bool ok = std::fflush(file_) == 0;
  // A skip at the very end leaves no byte behind it: extend the file to its full length.
  ok = ok && ftruncate(fileno(file_), static_cast<off_t>(written_)) == 0;
  ok = ok && fsync(fileno(file_)) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok || std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp_path_.c_str());
    fail(path_, ": cannot finish writing: ", std::strerror(err));
  }
}

}  // namespace baichuan
