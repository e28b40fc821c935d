// Writes the zip archive of a torch.save checkpoint: stored (uncompressed) entries `<archive>/...`,
// each entry's bytes streamed by a callback, CRC-32 filled in afterwards, zip64 records always (so
// a 7B checkpoint of several GB needs no other path). Read back by formats/zip_archive.h.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/atomic_file.h"

namespace baichuan::formats {

class TorchZipWriter {
 public:
  // `path` is written under a temporary name and renamed into place by finish().
  explicit TorchZipWriter(const std::string& path);

  // Adds entry `name` of `size` bytes; `produce(chunk, n)` is called with consecutive pieces to fill
  // (in order, n at most 64 MiB each) until `size` bytes are written.
  void add(const std::string& name, size_t size, const std::function<void(std::byte*, size_t)>& produce);
  void add(const std::string& name, const std::string& bytes);

  // Writes the central directory and renames the file into place.
  void finish();

 private:
  struct Entry {
    std::string name;
    size_t size, offset;
    uint32_t crc;
  };
  AtomicFile file_;
  std::vector<Entry> entries_;
};

}  // namespace baichuan::formats
