#include "formats/zip_archive.h"

#include <algorithm>
#include <cstring>

#include "core/byte_reader.h"
#include "core/error.h"

namespace baichuan::formats {

namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;

// True if [offset, offset + length) lies inside [0, limit), without overflowing.
bool fits(uint64_t offset, uint64_t length, uint64_t limit) { return offset <= limit && length <= limit - offset; }

uint32_t peek_u32(const std::byte* data, size_t pos) {
  uint32_t v;
  std::memcpy(&v, data + pos, 4);
  return v;
}

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t end_limit = 0;  // the central directory must end at or before this offset
};

// The EOCD sits at the very end, after a comment of up to 64 KiB: scan backwards for a signature whose
// comment length reaches exactly the end of the file, so bytes inside a comment cannot fool us.
size_t find_eocd(const std::byte* data, size_t size, const std::string& path) {
  if (size < kEocdSize)
    fail(path, ": not a zip archive: ", size, " bytes is too short for an end of central directory");
  size_t lowest = size - kEocdSize > 0xffff ? size - kEocdSize - 0xffff : 0;
  for (size_t pos = size - kEocdSize + 1; pos-- > lowest;) {
    if (peek_u32(data, pos) != kEocdSig) continue;
    uint16_t comment_len;
    std::memcpy(&comment_len, data + pos + 20, 2);
    if (pos + kEocdSize + comment_len == size) return pos;
  }
  fail(path, ": not a zip archive (or truncated): no end of central directory record found");
}

Directory read_directory_location(const std::byte* data, size_t size, const std::string& path) {
  ByteReader in(data, size, path);
  const size_t eocd = find_eocd(data, size, path);
  in.seek(eocd + 4, "the end of central directory");
  auto disk = in.read<uint16_t>("the EOCD disk number");
  auto cd_disk = in.read<uint16_t>("the EOCD directory disk");
  auto entries_here = in.read<uint16_t>("the EOCD entry count");
  auto entries = in.read<uint16_t>("the EOCD entry count");
  auto cd_size = in.read<uint32_t>("the EOCD directory size");
  auto cd_offset = in.read<uint32_t>("the EOCD directory offset");
  if (disk != 0 || cd_disk != 0 || entries_here != entries)
    fail(path, ": multi-disk zip archives are not supported");
  Directory dir{entries, cd_offset, cd_size, eocd};

  // Zip64: a locator just before the EOCD points at the zip64 EOCD whose 64-bit fields replace the
  // saturated 16/32-bit ones (shards over 4 GiB need this; torch writes it even for small files).
  if (eocd >= kZip64LocatorSize && peek_u32(data, eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const size_t locator = eocd - kZip64LocatorSize;
    in.seek(locator + 4, "the zip64 locator");
    auto z64_disk = in.read<uint32_t>("the zip64 locator disk");
    auto z64_offset = in.read<uint64_t>("the zip64 EOCD offset");
    auto disks = in.read<uint32_t>("the zip64 disk count");
    if (z64_disk != 0 || disks > 1) fail(path, ": multi-disk zip archives are not supported");
    if (!fits(z64_offset, kZip64EocdSize, locator))
      fail(path, ": zip64 end of central directory offset ", z64_offset, " is outside the archive (locator at ",
           locator, ")");
    in.seek(static_cast<size_t>(z64_offset), "the zip64 end of central directory");
    if (in.read<uint32_t>("the zip64 EOCD signature") != kZip64EocdSig)
      fail(path, ": no zip64 end of central directory record at offset ", z64_offset);
    in.skip(8 + 2 + 2, "the zip64 EOCD record size and versions");
    auto disk64 = in.read<uint32_t>("the zip64 EOCD disk number");
    auto cd_disk64 = in.read<uint32_t>("the zip64 EOCD directory disk");
    auto entries_here64 = in.read<uint64_t>("the zip64 EOCD entry count");
    auto entries64 = in.read<uint64_t>("the zip64 EOCD entry count");
    auto cd_size64 = in.read<uint64_t>("the zip64 EOCD directory size");
    auto cd_offset64 = in.read<uint64_t>("the zip64 EOCD directory offset");
    if (disk64 != 0 || cd_disk64 != 0 || entries_here64 != entries64)
      fail(path, ": multi-disk zip archives are not supported");
    dir = {entries64, cd_offset64, cd_size64, static_cast<size_t>(z64_offset)};
  }
  if (!fits(dir.offset, dir.size, dir.end_limit))
    fail(path, ": central directory (offset ", dir.offset, ", ", dir.size, " bytes) is outside the archive (",
         dir.end_limit, " bytes before the end records)");
  if (dir.entries > dir.size / kCentralHeaderSize)
    fail(path, ": central directory claims ", dir.entries, " entries but holds only ", dir.size, " bytes");
  return dir;
}

// Replaces saturated 32-bit fields of a central header by the values of its zip64 extra field.
void apply_zip64_extra(std::string_view extra, ZipEntry& e, uint64_t& local_offset, const std::string& what) {
  const bool need_usize = e.uncompressed_size == 0xffffffffu, need_csize = e.size == 0xffffffffu,
             need_offset = local_offset == 0xffffffffu;
  if (!need_usize && !need_csize && !need_offset) return;
  ByteReader in(reinterpret_cast<const std::byte*>(extra.data()), extra.size(), what + ": extra field");
  while (in.remaining() >= 4) {
    auto id = in.read<uint16_t>("an extra field id");
    auto len = in.read<uint16_t>("an extra field length");
    ByteReader field(in.here(), std::min<size_t>(len, in.remaining()), what + ": zip64 extra field");
    in.skip(len, "an extra field");
    if (id != kZip64ExtraId) continue;
    if (need_usize) e.uncompressed_size = field.read<uint64_t>("the zip64 uncompressed size");
    if (need_csize) e.size = field.read<uint64_t>("the zip64 compressed size");
    if (need_offset) local_offset = field.read<uint64_t>("the zip64 local header offset");
    return;
  }
  fail(what, ": sizes or offset are 0xFFFFFFFF but there is no zip64 extra field");
}

}  // namespace

ZipArchive::ZipArchive(const std::byte* data, size_t size, std::string path)
    : data_(data), size_(size), path_(std::move(path)) {
  const Directory dir = read_directory_location(data, size, path_);
  ByteReader in(data, size, path_);
  const uint64_t cd_end = dir.offset + dir.size;

  in.seek(static_cast<size_t>(dir.offset), "the central directory");
  entries_.reserve(static_cast<size_t>(dir.entries));
  for (uint64_t i = 0; i < dir.entries; ++i) {
    const size_t header = in.pos();
    if (in.read<uint32_t>("a central directory signature") != kCentralHeaderSig)
      fail(path_, ": central directory entry ", i, " at offset ", header, " has a bad signature");
    ZipEntry e;
    in.skip(4, "the central header versions");
    e.flags = in.read<uint16_t>("the central header flags");
    e.method = in.read<uint16_t>("the central header method");
    in.skip(8, "the central header time, date and CRC");
    e.size = in.read<uint32_t>("the central header compressed size");
    e.uncompressed_size = in.read<uint32_t>("the central header uncompressed size");
    auto name_len = in.read<uint16_t>("the central header name length");
    auto extra_len = in.read<uint16_t>("the central header extra length");
    auto comment_len = in.read<uint16_t>("the central header comment length");
    in.skip(8, "the central header disk and attributes");
    uint64_t local = in.read<uint32_t>("the central header local offset");
    e.name = std::string(in.read_bytes(name_len, "an entry name"));
    const std::string what = path_ + ": zip entry '" + e.name + "'";
    apply_zip64_extra(in.read_bytes(extra_len, "an entry extra field"), e, local, what);
    in.skip(comment_len, "an entry comment");
    if (in.pos() > cd_end) fail(what, ": central header runs past the end of the central directory");

    // The local header repeats the name and has its own extra field (torch pads it to align the data);
    // its size fields may be zero (data descriptor), so the central directory's sizes are the truth.
    if (!fits(local, kLocalHeaderSize, dir.offset))
      fail(what, ": local header offset ", local, " is outside the archive data (", dir.offset, " bytes)");
    ByteReader lh(data, static_cast<size_t>(dir.offset), path_);
    lh.seek(static_cast<size_t>(local), "a local header");
    if (lh.read<uint32_t>("a local header signature") != kLocalHeaderSig)
      fail(what, ": no local header at offset ", local);
    lh.skip(22, "the local header fields");
    auto local_name_len = lh.read<uint16_t>("the local header name length");
    auto local_extra_len = lh.read<uint16_t>("the local header extra length");
    if (lh.read_bytes(local_name_len, "the local header name") != e.name)
      fail(what, ": the local header at offset ", local, " names a different entry");
    lh.skip(local_extra_len, "the local header extra field");
    e.data_offset = lh.pos();
    if (!fits(e.data_offset, e.size, dir.offset))
      fail(what, ": data (offset ", e.data_offset, ", ", e.size, " bytes) runs past the archive data (",
           dir.offset, " bytes)");
    if (!by_name_.emplace(e.name, entries_.size()).second) fail(what, ": duplicate entry name");
    entries_.push_back(std::move(e));
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::string_view ZipArchive::stored_bytes(const ZipEntry& e) const {
  if (e.flags & 1u) fail(path_, ": zip entry '", e.name, "' is encrypted");
  if (e.method != 0)
    fail(path_, ": zip entry '", e.name, "' is compressed (method ", e.method,
         "); torch.save writes stored entries only, so this file was repacked: unzip and re-zip it with -0");
  if (e.size != e.uncompressed_size)
    fail(path_, ": zip entry '", e.name, "' is stored but its sizes differ (", e.size, " vs ",
         e.uncompressed_size, ")");
  // The constructor checked its own entries; this guards an entry that came from elsewhere.
  if (e.data_offset > size_ || e.size > size_ - e.data_offset)
    fail(path_, ": zip entry '", e.name, "' lies outside the archive's ", size_, " bytes");
  return {reinterpret_cast<const char*>(data_ + e.data_offset), static_cast<size_t>(e.size)};
}

}  // namespace baichuan::formats
