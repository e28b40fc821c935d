#include "formats/bnb_nf4.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "formats/torch_zip_writer.h"
#include "quant/blocks.h"

namespace baichuan::formats {

namespace {

std::vector<float> floats_of(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data, out.size() * 4);
  return out;
}


// One weight's parts, checked: its element count and what decodes its block scales.
struct CheckedNf4 {
  int64_t n = 0, nblocks = 0, blocksize2 = 0;
  const uint8_t* qabsmax = nullptr;
  std::vector<float> code2, absmax2;
  float offset = 0.0f;

  // absmax of block b: code2[qabsmax[b]] * absmax2[b / blocksize2] + offset, rounded after the
  // multiply as bitsandbytes does (volatile: no fused multiply-add).
  float block_scale(int64_t b) const {
    volatile float scaled = code2[qabsmax[b]] * absmax2[static_cast<size_t>(b / blocksize2)];
    return scaled + offset;
  }
};

CheckedNf4 check_parts(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
  const TorchQuantState& q = p.state;
  const std::string what = cat(path, ": 4-bit weight '", name, "'");
  auto expect_type = [&](const Tensor& t, DType type, const char* role) {
    if (t.dtype != type)
      fail(what, ": ", role, " '", t.name, "' has type ", dtype_name(t.dtype), ", expected ", dtype_name(type));
  };
  auto expect_count = [&](const Tensor& t, int64_t count, const char* role, const std::string& because) {
    if (t.numel() != count)
      fail(what, ": ", role, " '", t.name, "' has ", t.numel(), " elements, expected ", count, " (", because, ")");
  };
  if (q.quant_type != "nf4")
    fail(what, ": quant_type is '", q.quant_type, "'; only 'nf4' (the Baichuan 2 4-bit releases) is supported");
  if (q.blocksize != 64)
    fail(what, ": blocksize is ", q.blocksize, "; the Baichuan 2 4-bit releases use 64, other sizes are not supported");
  if (q.dtype != DType::F16)
    fail(what, ": the dequantized dtype is ", dtype_name(q.dtype), "; the Baichuan 2 4-bit releases use float16");
  if (q.dtype2 != DType::F32) fail(what, ": the scales' dtype is ", dtype_name(q.dtype2), ", expected float32");
  if (q.blocksize2 <= 0) fail(what, ": the scales' blocksize is ", q.blocksize2, ", expected a positive number");
  if (q.shape.size() != 2 || q.shape[0] <= 0 || q.shape[1] <= 0) {
    Tensor s;
    s.shape = q.shape;
    fail(what, ": shape ", s.shape_str(), " is not that of a matrix [out, in]");
  }
  const int64_t n = checked_numel(q.shape, what);
  const int64_t nblocks = (n + 63) / 64;
  const int64_t nblocks2 = (nblocks + q.blocksize2 - 1) / q.blocksize2;
  expect_type(p.data, DType::U8, "the packed codes");
  expect_count(p.data, (n + 1) / 2, "the packed codes", cat("two codes per byte for ", n, " weights"));
  expect_type(p.absmax, DType::U8, "the block scale codes");
  expect_count(p.absmax, nblocks, "the block scale codes", cat("one per 64 of ", n, " weights"));
  expect_type(p.offset, DType::F32, "the scale offset");
  expect_count(p.offset, 1, "the scale offset", "a scalar");
  expect_type(p.absmax2, DType::F32, "the scales' scales");
  expect_count(p.absmax2, nblocks2, "the scales' scales", cat("one per ", q.blocksize2, " of ", nblocks, " blocks"));
  expect_type(p.code2, DType::F32, "the scale code map");
  expect_count(p.code2, 256, "the scale code map", "one value per byte");
  expect_type(p.code, DType::F32, "the 4-bit code table");
  expect_count(p.code, 16, "the 4-bit code table", "one value per code");
  const std::vector<float> code = floats_of(p.code);
  if (std::memcmp(code.data(), quant::kNf4Values, sizeof quant::kNf4Values) != 0)
    fail(what, ": the code table '", p.code.name, "' is not bitsandbytes' NF4 table");
  CheckedNf4 c;
  c.n = n;
  c.nblocks = nblocks;
  c.blocksize2 = q.blocksize2;
  c.qabsmax = reinterpret_cast<const uint8_t*>(p.absmax.data);
  c.code2 = floats_of(p.code2);
  c.absmax2 = floats_of(p.absmax2);
  std::memcpy(&c.offset, p.offset.data, 4);
  return c;
}

// Blocks of 64 weights handed to a thread at a time: 1 MiB of codes.
constexpr int64_t kBlocksPerChunk = 1 << 15;

// fn(first, end) over chunks of [0, nblocks), on all hardware threads when there is more than one
// chunk (the readers are not given the caller's pool; a 7B file's 6.5 billion weights took ~12 s on
// one thread, a weight's own pool costs ~0.1 ms).
void for_block_chunks(int64_t nblocks, const std::function<void(int64_t, int64_t)>& fn) {
  if (nblocks <= kBlocksPerChunk) return fn(0, nblocks);
  ThreadPool pool(ThreadPool::default_threads());
  pool.parallel_for(nblocks, [&](int64_t first, int64_t end, int) { fn(first, end); }, kBlocksPerChunk);
}

// A tensor owning `nbytes` of uninitialised memory, and where to write them. Each conversion writes
// every byte, so zero-filling first (make_buffer) would be one more pass over a 7B file's 3.4 GB.
struct TensorToFill {
  Tensor tensor;
  std::byte* data;
};
TensorToFill uninitialised_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, size_t nbytes) {
  std::shared_ptr<std::byte[]> buffer = std::make_unique_for_overwrite<std::byte[]>(nbytes);
  TensorToFill t{Tensor{}, buffer.get()};
  t.tensor.name = name;
  t.tensor.dtype = dtype;
  t.tensor.shape = shape;
  t.tensor.data = buffer.get();
  t.tensor.nbytes = nbytes;
  t.tensor.owner = std::move(buffer);
  return t;
}

}  // namespace

Tensor dequantize_bnb_nf4(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
  const CheckedNf4 w = check_parts(p, name, path);
  TensorToFill result = uninitialised_tensor(name, DType::F16, p.state.shape, static_cast<size_t>(w.n) * 2);
  auto* out = reinterpret_cast<uint16_t*>(result.data);
  const auto* packed = reinterpret_cast<const uint8_t*>(p.data.data);
  for_block_chunks(w.nblocks, [&](int64_t first, int64_t end) {
    for (int64_t b = first; b < end; ++b) {
      const float d = w.block_scale(b);
      for (int64_t i = b * 64; i < std::min(w.n, b * 64 + 64); ++i) {
        const uint8_t byte = packed[i / 2];
        const int c = (i % 2 == 0) ? byte >> 4 : byte & 15;
        out[i] = f32_to_f16(quant::kNf4Values[c] * d);
      }
    }
  });
  return std::move(result.tensor);
}

Tensor bnb_nf4_blocks(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
  const CheckedNf4 w = check_parts(p, name, path);
  const int64_t cols = p.state.shape[1];
  if (cols % quant::kNf4BlockElems != 0)
    fail(path, ": 4-bit weight '", name, "': rows of ", cols, " elements are not whole NF4 blocks of 64");
  TensorToFill result =
      uninitialised_tensor(name, DType::NF4, p.state.shape, static_cast<size_t>(w.nblocks) * sizeof(quant::block_nf4));
  auto* blocks = reinterpret_cast<quant::block_nf4*>(result.data);
  const auto* packed = reinterpret_cast<const uint8_t*>(p.data.data);
  // One pass over the codes, the scales decoded on the way.
  for_block_chunks(w.nblocks, [&](int64_t first, int64_t end) {
    for (int64_t b = first; b < end; ++b) {
      quant::block_nf4& block = blocks[b];
      const float d = w.block_scale(b);
      std::memcpy(block.d, &d, 4);
      // The file holds element 2k in the high nibble of byte k, 2k + 1 in the low one; the block
      // keeps element j in the low nibble of qs[j], element j + 32 in the high one.
      const uint8_t* in = packed + 32 * b;
      uint8_t code[64];
      for (int k = 0; k < 32; ++k) {
        code[2 * k] = in[k] >> 4;
        code[2 * k + 1] = in[k] & 15;
      }
      for (int j = 0; j < 32; ++j) block.qs[j] = static_cast<uint8_t>(code[j] | code[j + 32] << 4);
    }
  });
  // The file's codes are not needed again: a memory-mapped file drops them from resident memory, so
  // the weights are not resident twice (a no-op for other memory). Once per weight: chunk ends are
  // not page-aligned, and each would keep a page.
  MappedFile::release_pages(p.data.data, p.data.nbytes);
  return std::move(result.tensor);
}

Nf4Path bnb_nf4_path() {
  const char* mode = std::getenv("BAICHUAN_NF4");
  if (mode == nullptr || *mode == '\0' || std::string_view(mode) == "native") return Nf4Path::Native;
  if (std::string_view(mode) == "f16") return Nf4Path::F16;
  fail("BAICHUAN_NF4=", mode, ": unknown 4-bit path (use native, the default, or f16)");
}

bool keeps_nf4_blocks(const std::vector<int64_t>& shape) {
  // The path first: a misspelt BAICHUAN_NF4 is an error whatever the shapes.
  return bnb_nf4_path() == Nf4Path::Native && shape.size() == 2 && shape[1] % quant::kNf4BlockElems == 0;
}

Tensor read_bnb_nf4(const Bnb4bitParts& parts, const std::string& name, const std::string& path) {
  if (keeps_nf4_blocks(parts.state.shape)) return bnb_nf4_blocks(parts, name, path);
  return dequantize_bnb_nf4(parts, name, path);
}

std::string describe_bnb_nf4_load(int64_t nf4_matrices, const std::string& config_path) {
  if (nf4_matrices > 0)
    return cat(", 4-bit weights: ", nf4_matrices, " matrices kept NF4 (exact float products; BAICHUAN_NF4=f16 dequantizes)");
  const nlohmann::json config = read_json_file(config_path);
  const auto q = config.find("quantization_config");
  if (q == config.end() || !q->is_object()) return "";
  const auto four_bit = q->find("load_in_4bit");
  if (four_bit == q->end() || !four_bit->is_boolean() || !four_bit->get<bool>()) return "";
  return bnb_nf4_path() == Nf4Path::F16 ? ", 4-bit weights dequantized to F16 (BAICHUAN_NF4=f16)"
                                        : ", 4-bit weights dequantized to F16 (rows are not whole NF4 blocks of 64)";
}

// ---- writing ------------------------------------------------------------------------------------
namespace {

// Pickle protocol 2 pieces, as torch.save emits them (without the memo: every reference is spelt out).
// Appended piece by piece (long chains of string + trip a false -Wstringop-overflow in GCC 12).
void append(std::string& out, std::initializer_list<std::string_view> pieces) {
  for (std::string_view p : pieces) out.append(p);
}
std::string pickle_le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}
std::string pickle_str(const std::string& s) {
  std::string out = "X";
  append(out, {pickle_le(s.size(), 4), s});
  return out;
}
std::string pickle_global(const std::string& module, const std::string& name) {
  std::string out = "c";
  append(out, {module, "\n", name, "\n"});
  return out;
}
std::string pickle_int(int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) fail("4-bit writer: ", v, " does not fit the pickle's 32-bit ints");
  std::string out(5, 'J');  // BININT and 4 little-endian bytes
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(1 + i)] = static_cast<char>((static_cast<uint32_t>(v) >> (8 * i)) & 0xFF);
  return out;
}
std::string pickle_ints(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s.append(pickle_int(x));
  return s + "t";
}
std::string empty_ordered_dict() { return pickle_global("collections", "OrderedDict") + ")R"; }

// _rebuild_tensor_v2(storage, 0, size, contiguous stride, False, OrderedDict())
std::string pickle_tensor(const std::string& storage_type, const std::string& key, int64_t numel,
                          const std::vector<int64_t>& size) {
  std::vector<int64_t> stride(size.size(), 1);
  for (size_t i = size.size(); i-- > 1;) stride[i - 1] = stride[i] * size[i];
  std::string out = pickle_global("torch._utils", "_rebuild_tensor_v2");
  append(out, {"((", pickle_str("storage"), pickle_global("torch", storage_type), pickle_str(key), pickle_str("cpu"),
               pickle_int(numel), "tQ", pickle_int(0), pickle_ints(size), pickle_ints(stride), "\x89",
               empty_ordered_dict(), "tR"});
  return out;
}

}  // namespace

void write_bnb_nf4_bin(const std::string& path, const std::vector<Bnb4bitTensorToWrite>& tensors,
                       const std::vector<float>& code2) {
  if (code2.size() != 256) fail("4-bit writer: code2 has ", code2.size(), " values, expected 256");
  struct Storage {
    std::string key;
    size_t bytes;
    std::function<void(std::byte*, size_t, size_t)> produce;
  };
  std::vector<Storage> storages;
  auto add_storage = [&](size_t bytes, std::function<void(std::byte*, size_t, size_t)> produce) {
    storages.push_back({std::to_string(storages.size()), bytes, std::move(produce)});
    return storages.back().key;
  };
  auto floats = [](const std::vector<float>& v) {
    return [v](std::byte* out, size_t first, size_t n) { std::memcpy(out, reinterpret_cast<const std::byte*>(v.data()) + first, n); };
  };
  const std::string code2_key = add_storage(256 * 4, floats(code2));
  const std::string code_key = add_storage(16 * 4, floats(std::vector<float>(quant::kNf4Values, quant::kNf4Values + 16)));

  std::string pkl = "\x80\x02}(";
  for (const Bnb4bitTensorToWrite& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (!t.four_bit) {
      const std::string key = add_storage(static_cast<size_t>(n) * 2, t.produce);
      append(pkl, {pickle_str(t.name), pickle_global("torch._utils", "_rebuild_parameter"), "(",
                   pickle_tensor("HalfStorage", key, n, t.shape), "\x89", empty_ordered_dict(), "tR"});
      continue;
    }
    if (t.shape.size() != 2) fail("4-bit writer: '", t.name, "' is not a matrix");
    const int64_t nblocks = (n + 63) / 64, nblocks2 = (nblocks + 255) / 256;
    if (static_cast<int64_t>(t.absmax2.size()) != nblocks2)
      fail("4-bit writer: '", t.name, "' has ", t.absmax2.size(), " absmax2 values, expected ", nblocks2);
    const std::string data_key = add_storage(static_cast<size_t>((n + 1) / 2), t.produce);
    const std::string qabsmax_key = add_storage(static_cast<size_t>(nblocks), t.block_codes);
    const std::string offset_key = add_storage(4, floats({t.offset}));
    const std::string absmax2_key = add_storage(static_cast<size_t>(nblocks2) * 4, floats(t.absmax2));
    append(pkl, {pickle_str(t.name + ".data"), pickle_tensor("ByteStorage", data_key, (n + 1) / 2, {(n + 1) / 2, 1})});
    // [qabsmax, torch.Size(shape), torch.float16, 64, [offset, [absmax2, code2, 256, False, torch.float32,
    //  None, None]], 'nf4', code]
    append(pkl, {pickle_str(t.name + ".quant_state"), "](", pickle_tensor("ByteStorage", qabsmax_key, nblocks, {nblocks}),
                 pickle_global("torch", "Size"), "(", pickle_ints(t.shape), "tR", pickle_global("torch", "float16"),
                 pickle_int(64), "](", pickle_tensor("FloatStorage", offset_key, 1, {}), "](",
                 pickle_tensor("FloatStorage", absmax2_key, nblocks2, {nblocks2}),
                 pickle_tensor("FloatStorage", code2_key, 256, {256}), pickle_int(256), "\x89",
                 pickle_global("torch", "float32"), "NNee", pickle_str("nf4"),
                 pickle_tensor("FloatStorage", code_key, 16, {16}), "e"});
  }
  pkl += "u.";

  TorchZipWriter zip(path);
  zip.add("pytorch_model/data.pkl", pkl);
  for (const Storage& s : storages) {
    size_t at = 0;
    zip.add("pytorch_model/data/" + s.key, s.bytes, [&](std::byte* out, size_t n) {
      s.produce(out, at, n);
      at += n;
    });
  }
  zip.add("pytorch_model/version", "3\n");
  zip.finish();
}

}  // namespace baichuan::formats
