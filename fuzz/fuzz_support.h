// Shared by the libFuzzer targets: the checks a reader's result must pass beyond "no crash" (a
// failed check aborts, which libFuzzer reports as a crash with the input saved), and a private
// temporary folder for the readers that take a path rather than bytes.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace fuzz_support {

template <typename... Args>
[[noreturn]] void property_failed(const Args&... args) {
  std::fprintf(stderr, "fuzz property failed: %s\n", baichuan::cat(args...).c_str());
  std::abort();
}

// Every tensor a reader returns over the image [begin, begin + size) owned by `image`: a view (owned
// by the image) lies inside it; a copy (a tensor with an owner of its own, e.g. a MindSpore tensor
// assembled from parts) is checked by ASan alone. Either way the byte count is what its type and
// shape need, and each byte is read.
inline void check_tensors_inside(const std::vector<baichuan::Tensor>& tensors, const std::byte* begin, size_t size,
                                 const std::shared_ptr<const void>& image = nullptr) {
  unsigned sum = 0;
  for (const auto& t : tensors) {
    const bool view = t.owner == image;
    const auto at = static_cast<size_t>(t.data - begin);
    if (view && t.nbytes > 0 && (t.data < begin || at > size || t.nbytes > size - at))
      property_failed("tensor '", t.name, "' (", t.nbytes, " bytes) lies outside the ", size, "-byte file");
    size_t expected = 0;
    try {
      expected = baichuan::bytes_for(t.dtype, baichuan::checked_numel(t.shape, t.name), t.name);
    } catch (const baichuan::Error& e) {
      property_failed("tensor '", t.name, "' was returned with a shape its type cannot hold: ", e.what());
    }
    if (expected != t.nbytes)
      property_failed("tensor '", t.name, "' ", t.shape_str(), " holds ", t.nbytes, " bytes, its shape needs ", expected);
    for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
  }
  volatile unsigned sink = sum;
  (void)sink;
}

// A folder of this process's own under /dev/shm (else the system temporary folder), removed at exit.
class TempDir {
 public:
  TempDir() {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    path_ = base / ("baichuan-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `bytes` to <folder>/<name> (replacing it) and returns the path.
  std::string write(const std::string& name, std::string_view bytes) const {
    std::string file = (path_ / name).string();
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) property_failed("cannot write ", file);
    return file;
  }
  void remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove(path_ / name, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline const TempDir& temp_dir() {
  static const TempDir dir;
  return dir;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace fuzz_support
