// Writes a file under a temporary name and renames it into place on commit(), so an interrupted run
// never leaves a half-written file behind. Without commit() the temporary file is removed.
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

namespace baichuan {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void pad_to(size_t alignment);  // writes zero bytes up to the next multiple of `alignment`
  // Moves the append position forward to `offset` (>= written()); the bytes skipped read as zeros and
  // take no disk space where the file system has holes (MindRecord's fixed page slots).
  void skip_to(size_t offset);
  // Writes inside what is already written or skipped, leaving the append position where it is: for a
  // header at the start of a file that is only known once the data after it is written.
  void write_at(size_t offset, const void* data, size_t n);
  size_t written() const { return written_; }
  void commit();

 private:
  std::string path_, tmp_path_;
  std::FILE* file_ = nullptr;
  size_t written_ = 0;
};

}  // namespace baichuan
