// Bounds-checked little-endian reading of an in-memory file image. Every read checks the remaining
// length first and throws an Error naming the file and offset, so parsers never read past the end.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/error.h"

namespace baichuan {

class ByteReader {
 public:
  ByteReader(const std::byte* data, size_t size, std::string what)
      : data_(data), size_(size), what_(std::move(what)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::byte* here() const { return data_ + pos_; }
  const std::string& what() const { return what_; }

  void need(size_t n, std::string_view reading) const {
    if (n > remaining())
      fail(what_, ": truncated: need ", n, " bytes for ", reading, " at offset ", pos_, ", only ", remaining(),
           " left");
  }

  template <typename T>
  T read(std::string_view reading) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), reading);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(size_t n, std::string_view reading) {
    need(n, reading);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  void skip(size_t n, std::string_view reading) {
    need(n, reading);
    pos_ += n;
  }

  void seek(size_t pos, std::string_view reading) {
    if (pos > size_) fail(what_, ": offset ", pos, " for ", reading, " is past the end (", size_, " bytes)");
    pos_ = pos;
  }

 private:
  const std::byte* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace baichuan
