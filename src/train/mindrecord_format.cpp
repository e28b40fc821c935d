#include "train/mindrecord_format.h"

#include <limits>

#include "core/error.h"

namespace baichuan::train::mindrecord {

namespace {

int width_code(int32_t v) {
  if (v >= std::numeric_limits<int8_t>::min() && v <= std::numeric_limits<int8_t>::max()) return 0;
  if (v >= std::numeric_limits<int16_t>::min() && v <= std::numeric_limits<int16_t>::max()) return 1;
  return 2;  // an int32 column never needs int64
}

}  // namespace

void append_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

uint64_t read_be64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t min_compressed_size(uint64_t n) { return 4 + (n + 3) / 4 + n; }

void append_compressed_ints(std::string& out, std::span<const int32_t> values) {
  const uint64_t n = values.size();
  if (n > std::numeric_limits<uint32_t>::max()) fail("MindRecord column of ", n, " values: more than 2^32");
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xFF);
  const size_t bitmap = out.size();
  out.append((n + 3) / 4, '\0');
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t v = values[i];
    const int code = width_code(v);
    out[bitmap + i / 4] = static_cast<char>(static_cast<unsigned char>(out[bitmap + i / 4]) | (code << (2 * (3 - i % 4))));
    const auto u = static_cast<uint32_t>(v);
    for (int b = 0; b < (1 << code); ++b) out += static_cast<char>((u >> (8 * b)) & 0xFF);
  }
}

void read_compressed_ints(const unsigned char* p, uint64_t n, std::vector<int32_t>& out, const std::string& what) {
  if (n < 4) fail(what, ": compressed column of ", n, " bytes, shorter than its 4-byte count");
  const uint64_t count = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
  const uint64_t bitmap = (count + 3) / 4;
  if (4 + bitmap > n) fail(what, ": compressed column of ", count, " values needs a ", bitmap, "-byte bitmap, has ", n - 4, " bytes");
  uint64_t pos = 4 + bitmap;
  for (uint64_t i = 0; i < count; ++i) {
    const int code = (p[4 + i / 4] >> (2 * (3 - i % 4))) & 3;
    const int width = 1 << code;
    if (pos + width > n) fail(what, ": compressed column ends inside value ", i, " of ", count);
    uint64_t u = 0;
    for (int b = width - 1; b >= 0; --b) u = (u << 8) | p[pos + b];
    pos += width;
    // Sign-extend from the stored width.
    const int shift = 64 - 8 * width;
    const int64_t v = static_cast<int64_t>(u << shift) >> shift;
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      fail(what, ": value ", i, " is ", v, ", outside int32");
    out.push_back(static_cast<int32_t>(v));
  }
  if (pos != n) fail(what, ": compressed column of ", count, " values takes ", pos, " bytes, its length says ", n);
}

std::vector<std::string> shard_paths(const std::string& file_name, int shards) {
  if (shards < 1 || shards > kMaxShards) fail("MindRecord shard count ", shards, " out of range [1, ", kMaxShards, "]");
  if (shards == 1) return {file_name};
  const size_t digits = std::to_string(shards - 1).size();
  std::vector<std::string> paths;
  for (int i = 0; i < shards; ++i) {
    std::string suffix = std::to_string(i);
    paths.push_back(file_name + std::string(digits - suffix.size(), '0') + suffix);
  }
  return paths;
}

}  // namespace baichuan::train::mindrecord
