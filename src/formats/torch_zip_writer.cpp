#include "formats/torch_zip_writer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace baichuan::formats {
namespace {

// CRC-32 (the zip polynomial 0xEDB88320), one byte at a time through a 256-entry table.
const std::array<uint32_t, 256> kCrcTable = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}();

uint32_t crc32_update(uint32_t crc, const std::byte* p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ static_cast<uint8_t>(p[i])) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

constexpr uint32_t kSaturated = 0xFFFFFFFFu;  // "see the zip64 extra field"
constexpr size_t kChunk = size_t{64} << 20;

}  // namespace

TorchZipWriter::TorchZipWriter(const std::string& path) : file_(path) {}

void TorchZipWriter::add(const std::string& name, size_t size, const std::function<void(std::byte*, size_t)>& produce) {
  Entry e{name, size, file_.written(), 0};
  // Local header: sizes in the zip64 extra field; the CRC is patched in once the data is written.
  const std::string extra = le(1, 2) + le(16, 2) + le(size, 8) + le(size, 8);
  file_.write(le(0x04034b50, 4) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + le(kSaturated, 4) +
              le(kSaturated, 4) + le(name.size(), 2) + le(extra.size(), 2) + name + extra);
  std::vector<std::byte> chunk(std::min(size, kChunk));
  for (size_t done = 0; done < size;) {
    const size_t n = std::min(kChunk, size - done);
    produce(chunk.data(), n);
    e.crc = crc32_update(e.crc, chunk.data(), n);
    file_.write(chunk.data(), n);
    done += n;
  }
  const std::string crc = le(e.crc, 4);
  file_.write_at(e.offset + 14, crc.data(), 4);
  entries_.push_back(std::move(e));
}

void TorchZipWriter::add(const std::string& name, const std::string& bytes) {
  size_t at = 0;
  add(name, bytes.size(), [&](std::byte* out, size_t n) {
    std::copy_n(reinterpret_cast<const std::byte*>(bytes.data()) + at, n, out);
    at += n;
  });
}

void TorchZipWriter::finish() {
  const size_t cd_offset = file_.written();
  for (const Entry& e : entries_) {
    const std::string extra = le(1, 2) + le(24, 2) + le(e.size, 8) + le(e.size, 8) + le(e.offset, 8);
    file_.write(le(0x02014b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(e.crc, 4) +
                le(kSaturated, 4) + le(kSaturated, 4) + le(e.name.size(), 2) + le(extra.size(), 2) + le(0, 2) +
                le(0, 2) + le(0, 2) + le(0, 4) + le(kSaturated, 4) + e.name + extra);
  }
  const size_t cd_size = file_.written() - cd_offset, zip64_eocd = file_.written();
  file_.write(le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(entries_.size(), 8) +
              le(entries_.size(), 8) + le(cd_size, 8) + le(cd_offset, 8));
  file_.write(le(0x07064b50, 4) + le(0, 4) + le(zip64_eocd, 8) + le(1, 4));
  file_.write(le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2) + le(kSaturated, 4) +
              le(kSaturated, 4) + le(0, 2));
  file_.commit();
}

}  // namespace baichuan::formats
