#include "formats/torch_bin.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/bnb_nf4.h"
#include "formats/torch_bin_memory.h"
#include "formats/torch_pickle.h"
#include "formats/zip_archive.h"

namespace baichuan::formats {

namespace {

// The archive's top folder: the one entry named `<archive_name>/data.pkl`.
const ZipEntry& find_pickle(const ZipArchive& zip, std::string& prefix, const std::string& path) {
  const ZipEntry* found = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    auto slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    if (found) fail(path, ": two pickles in one archive ('", found->name, "' and '", e.name, "')");
    found = &e;
    prefix = e.name.substr(0, slash + 1);
  }
  if (!found) fail(path, ": no '<name>/data.pkl' entry: not a PyTorch checkpoint (torch.save zip format)");
  return *found;
}

// PyTorch's definition: strides are row-major, ignoring dimensions of size 1; empty tensors are
// contiguous whatever their strides.
bool is_contiguous(const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
  for (int64_t d : size)
    if (d == 0) return true;
  int64_t expected = 1;
  for (size_t i = size.size(); i-- > 0;) {
    if (size[i] != 1 && stride[i] != expected) return false;
    expected *= size[i];  // cannot overflow: the caller checked the product of all (non-zero) sizes
  }
  return true;
}

std::string dims_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

namespace {

// A record of the pickle as a tensor viewing its storage in the archive, after every check.
Tensor resolve(const ZipArchive& zip, const std::string& prefix, TorchTensorRecord r, const std::shared_ptr<const void>& owner,
               const std::string& path) {
  const std::string what = cat(path, ": tensor '", r.name, "'");
  const std::string storage_name = "data/" + r.storage_key;
  const int64_t numel = checked_numel(r.size, what);
  if (!is_contiguous(r.size, r.stride))
    fail(what, ": size ", dims_str(r.size), " with stride ", dims_str(r.stride),
         " is not contiguous; save it with .contiguous()");
  if (r.storage_offset < 0) fail(what, ": negative storage offset ", r.storage_offset);
  if (numel > std::numeric_limits<int64_t>::max() - r.storage_offset) fail(what, ": storage offset is too large");
  const int64_t end = r.storage_offset + numel;
  if (end > r.storage_numel)
    fail(what, ": storage '", storage_name, "' has ", r.storage_numel, " elements, the tensor needs ", end);

  const ZipEntry* entry = zip.find(prefix + storage_name);
  if (!entry) fail(what, ": storage '", storage_name, "' is missing from the archive");
  const std::string_view bytes = zip.stored_bytes(*entry);
  const size_t needed = bytes_for(r.dtype, end, what);
  if (needed > bytes.size())
    fail(what, ": storage '", storage_name, "' holds ", bytes.size(), " bytes, the tensor needs ", needed);

  Tensor t;
  t.name = std::move(r.name);
  t.dtype = r.dtype;
  t.shape = std::move(r.size);
  t.nbytes = bytes_for(r.dtype, numel, what);
  t.data = reinterpret_cast<const std::byte*>(bytes.data()) + (needed - t.nbytes);
  t.owner = owner;
  return t;
}

}  // namespace

std::vector<Tensor> read_torch_bin_memory(const std::byte* data, size_t size, std::shared_ptr<const void> owner,
                                          const std::string& path) {
  // torch.save before PyTorch 1.6 (or with _use_new_zipfile_serialization=False) writes bare pickles
  // that open with the pickled magic number 0x1950a86a20f9469cfc6c: name that instead of "not a zip".
  static constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                   0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (size >= sizeof kLegacyMagic && std::equal(kLegacyMagic, kLegacyMagic + sizeof kLegacyMagic,
                                                reinterpret_cast<const unsigned char*>(data)))
    fail(path, ": torch.save's legacy format (PyTorch before 1.6) is not supported; re-save it with torch.save from "
               "PyTorch 1.6 or later (the zip format)");
  ZipArchive zip(data, size, path);
  std::string prefix;
  const ZipEntry& pickle = find_pickle(zip, prefix, path);
  if (const ZipEntry* order = zip.find(prefix + "byteorder"); order && zip.stored_bytes(*order) != "little")
    fail(path, ": byteorder is '", zip.stored_bytes(*order), "'; only little-endian checkpoints are supported");

  std::vector<TorchQuantState> quant_states;
  std::vector<Tensor> tensors;
  for (TorchTensorRecord& r : read_torch_pickle(zip.stored_bytes(pickle), path, &quant_states))
    tensors.push_back(resolve(zip, prefix, std::move(r), owner, path));

  // bitsandbytes 4-bit weights (the official *-Chat-4bits layout): `<w>.data` + `<w>.quant_state`
  // become one tensor `<w>`.
  for (TorchQuantState& q : quant_states) {
    const std::string weight = q.name.substr(0, q.name.size() - std::string_view(".quant_state").size());
    auto data_it = std::find_if(tensors.begin(), tensors.end(), [&](const Tensor& t) { return t.name == weight + ".data"; });
    if (data_it == tensors.end())
      fail(path, ": 4-bit weight '", weight, "' has a quant_state but no '", weight, ".data' tensor");
    Bnb4bitParts parts;
    parts.data = std::move(*data_it);
    tensors.erase(data_it);
    parts.absmax = resolve(zip, prefix, q.absmax, owner, path);
    parts.offset = resolve(zip, prefix, q.offset, owner, path);
    parts.absmax2 = resolve(zip, prefix, q.absmax2, owner, path);
    parts.code2 = resolve(zip, prefix, q.code2, owner, path);
    parts.code = resolve(zip, prefix, q.code, owner, path);
    parts.state = std::move(q);
    tensors.push_back(read_bnb_nf4(parts, weight, path));
  }
  return tensors;
}

std::vector<Tensor> read_torch_bin(const std::string& path) {
  auto file = MappedFile::open(path);
  return read_torch_bin_memory(file->data(), file->size(), file, path);
}

}  // namespace baichuan::formats
