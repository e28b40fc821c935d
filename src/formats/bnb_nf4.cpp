#include "formats/bnb_nf4.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace baichuan::formats {

namespace {

std::vector<float> floats_of(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data, out.size() * 4);
  return out;
}


// The checked parts of one weight: its element count and its block scales, decoded.
struct DecodedNf4 {
  int64_t n = 0;
  std::vector<float> absmax;
};

DecodedNf4 check_and_decode(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
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
  const std::vector<float> code = floats_of(p.code), code2 = floats_of(p.code2), absmax2 = floats_of(p.absmax2);
  if (std::memcmp(code.data(), quant::kNf4Values, sizeof quant::kNf4Values) != 0)
    fail(what, ": the code table '", p.code.name, "' is not bitsandbytes' NF4 table");
  float offset;
  std::memcpy(&offset, p.offset.data, 4);

  std::vector<float> absmax(static_cast<size_t>(nblocks));
  const auto* qabsmax = reinterpret_cast<const uint8_t*>(p.absmax.data);
  for (int64_t b = 0; b < nblocks; ++b) {
    volatile float scaled = code2[qabsmax[b]] * absmax2[static_cast<size_t>(b / q.blocksize2)];  // no fused multiply-add
    absmax[static_cast<size_t>(b)] = scaled + offset;
  }
  return {n, std::move(absmax)};
}

Tensor owned_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    std::shared_ptr<std::vector<std::byte>> buffer) {
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = shape;
  t.data = buffer->data();
  t.nbytes = buffer->size();
  t.owner = std::move(buffer);
  return t;
}

}  // namespace

Tensor dequantize_bnb_nf4(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
  const DecodedNf4 w = check_and_decode(p, name, path);
  auto buffer = make_buffer(static_cast<size_t>(w.n) * 2);
  auto* out = reinterpret_cast<uint16_t*>(buffer->data());
  const auto* packed = reinterpret_cast<const uint8_t*>(p.data.data);
  for (int64_t i = 0; i < w.n; ++i) {
    const uint8_t byte = packed[i / 2];
    const int c = (i % 2 == 0) ? byte >> 4 : byte & 15;
    out[i] = f32_to_f16(quant::kNf4Values[c] * w.absmax[static_cast<size_t>(i / 64)]);
  }
  return owned_tensor(name, DType::F16, p.state.shape, std::move(buffer));
}

Tensor bnb_nf4_blocks(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
  const DecodedNf4 w = check_and_decode(p, name, path);
  const int64_t cols = p.state.shape[1];
  if (cols % quant::kNf4BlockElems != 0)
    fail(path, ": 4-bit weight '", name, "': rows of ", cols, " elements are not whole NF4 blocks of 64");
  const auto nblocks = static_cast<size_t>(w.n / quant::kNf4BlockElems);
  auto buffer = make_buffer(nblocks * sizeof(quant::block_nf4));
  const auto* packed = reinterpret_cast<const uint8_t*>(p.data.data);
  for (size_t b = 0; b < nblocks; ++b) {
    quant::block_nf4 block;
    std::memcpy(block.d, &w.absmax[b], 4);
    // The file holds element 2k in the high nibble of byte k, 2k + 1 in the low one.
    auto code = [&](size_t e) { const uint8_t byte = packed[32 * b + e / 2]; return e % 2 == 0 ? byte >> 4 : byte & 15; };
    for (size_t j = 0; j < 32; ++j) block.qs[j] = static_cast<uint8_t>(code(j) | code(j + 32) << 4);
    std::memcpy(buffer->data() + b * sizeof block, &block, sizeof block);
  }
  return owned_tensor(name, DType::NF4, p.state.shape, std::move(buffer));
}

Tensor read_bnb_nf4(const Bnb4bitParts& parts, const std::string& name, const std::string& path) {
  if (parts.state.shape.size() == 2 && parts.state.shape[1] % quant::kNf4BlockElems == 0)
    return bnb_nf4_blocks(parts, name, path);
  return dequantize_bnb_nf4(parts, name, path);
}

}  // namespace baichuan::formats
