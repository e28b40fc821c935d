// A read-only memory map of a whole file (RAII). Shared so tensors can keep it alive.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace baichuan {

class MappedFile {
 public:
  // Throws Error naming the path if it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the whole pages inside [p, p + n) from this process's resident memory when they belong
  // to a live file mapping (they are read back from the file if touched again); otherwise does
  // nothing. For data copied elsewhere (e.g. packed weights), so it is not resident twice.
  static void release_pages(const std::byte* p, size_t n);

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws Error naming the path on failure.
std::string read_text_file(const std::string& path);

bool file_exists(const std::string& path);

}  // namespace baichuan
