#include "formats/bnb_nf4.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace baichuan::formats {

const float kNf4Table[16] = {-1.0f,
                             -0.6961928009986877f,
                             -0.5250730514526367f,
                             -0.39491748809814453f,
                             -0.28444138169288635f,
                             -0.18477343022823334f,
                             -0.09105003625154495f,
                             0.0f,
                             0.07958029955625534f,
                             0.16093020141124725f,
                             0.24611230194568634f,
                             0.33791524171829224f,
                             0.44070982933044434f,
                             0.5626170039176941f,
                             0.7229568362236023f,
                             1.0f};

namespace {

std::vector<float> floats_of(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data, out.size() * 4);
  return out;
}

}  // namespace

Tensor dequantize_bnb_nf4(const Bnb4bitParts& p, const std::string& name, const std::string& path) {
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
  if (std::memcmp(code.data(), kNf4Table, sizeof kNf4Table) != 0)
    fail(what, ": the code table '", p.code.name, "' is not bitsandbytes' NF4 table");
  float offset;
  std::memcpy(&offset, p.offset.data, 4);

  std::vector<float> absmax(static_cast<size_t>(nblocks));
  const auto* qabsmax = reinterpret_cast<const uint8_t*>(p.absmax.data);
  for (int64_t b = 0; b < nblocks; ++b) {
    volatile float scaled = code2[qabsmax[b]] * absmax2[static_cast<size_t>(b / q.blocksize2)];  // no fused multiply-add
    absmax[static_cast<size_t>(b)] = scaled + offset;
  }
  auto buffer = make_buffer(static_cast<size_t>(n) * 2);
  auto* out = reinterpret_cast<uint16_t*>(buffer->data());
  const auto* packed = reinterpret_cast<const uint8_t*>(p.data.data);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i / 2];
    const int c = (i % 2 == 0) ? byte >> 4 : byte & 15;
    out[i] = f32_to_f16(kNf4Table[c] * absmax[static_cast<size_t>(i / 64)]);
  }
  Tensor t;
  t.name = name;
  t.dtype = DType::F16;
  t.shape = q.shape;
  t.data = buffer->data();
  t.nbytes = buffer->size();
  t.owner = buffer;
  return t;
}

}  // namespace baichuan::formats
