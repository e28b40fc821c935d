// The directory of a zip archive held in memory (a memory-mapped file): entry names and where their
// bytes are. We parse the zip records by hand rather than use libzip because libzip copies entry data
// out through its own read calls and cannot hand out pointers into our map; stored (uncompressed)
// entries here are returned as views into the caller's bytes, with zero copies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace baichuan::formats {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;        // 0 = stored; anything else is compressed
  uint16_t flags = 0;         // general purpose bit flags (bit 0 = encrypted)
  uint64_t data_offset = 0;   // first byte of the entry's data in the archive
  uint64_t size = 0;          // compressed size (equal to the uncompressed size when stored)
  uint64_t uncompressed_size = 0;
};

class ZipArchive {
 public:
  // Reads the end of central directory record (zip64 too), the central directory and each local
  // header. `path` prefixes every error message. Throws Error on any malformed or out-of-range record.
  ZipArchive(const std::byte* data, size_t size, std::string path);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;

  // The bytes of a stored entry; throws Error naming the entry if it is compressed or encrypted.
  std::string_view stored_bytes(const ZipEntry& entry) const;

 private:
  const std::byte* data_;
  size_t size_;
  std::string path_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace baichuan::formats
