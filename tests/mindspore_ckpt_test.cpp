#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "formats/mindspore_ckpt.h"
#include "formats/safetensors.h"
#include "shared_data.h"
#include "test_files.h"

using namespace baichuan;
using baichuan::formats::read_mindspore_ckpt;

namespace mindspore_ckpt_test {  // named, not anonymous: the tests compile as a unity build

// ---- Building checkpoint bytes by hand, straight from the wire format -------------------------------

std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  return s + static_cast<char>(v);
}

std::string field_varint(uint32_t number, uint64_t v) { return varint(uint64_t{number} << 3) + varint(v); }

std::string field_bytes(uint32_t number, const std::string& payload) {
  return varint(uint64_t{number} << 3 | 2) + varint(payload.size()) + payload;
}

std::string tensor_proto(const std::vector<int64_t>& dims, const std::string& type, const std::string& content,
                         bool packed = false) {
  std::string s;
  if (packed) {
    std::string run;
    for (int64_t d : dims) run += varint(static_cast<uint64_t>(d));
    s += field_bytes(1, run);
  } else {
    for (int64_t d : dims) s += field_varint(1, static_cast<uint64_t>(d));
  }
  return s + field_bytes(2, type) + field_bytes(3, content);
}

// One serialized Checkpoint message holding one Value.
std::string value(const std::string& tag, const std::string& tensor) {
  return field_bytes(1, field_bytes(1, tag) + field_bytes(2, tensor));
}

std::string floats(const std::vector<float>& xs) {
  std::string s(xs.size() * 4, '\0');
  std::memcpy(s.data(), xs.data(), s.size());
  return s;
}

std::string bytes_0_to(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + 1);
  return s;
}

// Named after the test, in the process's own folder (test_files.h).
std::string write_temp(const std::string& name, const std::string& bytes) {
  std::string path = baichuan::testing::temp_path(::testing::UnitTest::GetInstance()->current_test_info()->name(), name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Parses `bytes` through a file; the map keeps the data alive after the file is removed.
std::vector<Tensor> parse(const std::string& bytes) {
  std::string path = write_temp("ms_test.ckpt", bytes);
  auto tensors = read_mindspore_ckpt(path);
  std::remove(path.c_str());
  return tensors;
}

std::string contents(const Tensor& t) { return std::string(reinterpret_cast<const char*>(t.data), t.nbytes); }

// The Error message of parsing `bytes`, or "" if it parsed.
std::string parse_error(const std::string& bytes) {
  std::string path = write_temp("ms_bad.ckpt", bytes);
  const std::string msg = baichuan::testing::error_message_of([&] { read_mindspore_ckpt(path); }, "");
  if (!msg.empty()) {
    EXPECT_EQ(msg.rfind(path, 0), 0u) << "message does not start with the path: " << msg;
  }
  std::remove(path.c_str());
  return msg;
}

#define EXPECT_ERROR_WITH(bytes, ...)                                          \
  do {                                                                         \
    std::string msg_ = parse_error(bytes);                                     \
    ASSERT_FALSE(msg_.empty()) << "parsed without error";                      \
    for (std::string word_ : {__VA_ARGS__})                                    \
      EXPECT_NE(msg_.find(word_), std::string::npos) << "'" << word_ << "' not in: " << msg_; \
  } while (0)

// ---- The reference checkpoint ------------------------------------------------------------------------

const std::string kCkpt = baichuan::testing::shared_path("reference/b2-7b-tiny-mindspore/baichuan2_7b_tiny.ckpt");
const std::string kSafetensors = baichuan::testing::shared_path("reference/b2-7b-tiny/model.safetensors");

#define SKIP_WITHOUT_REFERENCE() \
  REQUIRE_SHARED(kCkpt);         \
  REQUIRE_SHARED(kSafetensors)

std::map<std::string, Tensor> by_name(const std::vector<Tensor>& ts) {
  std::map<std::string, Tensor> m;
  for (const auto& t : ts) m[t.name] = t;
  return m;
}

// Rows [begin, end) of a 2-D tensor's bytes.
std::string rows(const Tensor& t, int64_t begin, int64_t end) {
  size_t row_bytes = t.nbytes / static_cast<size_t>(t.shape[0]);
  return contents(t).substr(static_cast<size_t>(begin) * row_bytes, static_cast<size_t>(end - begin) * row_bytes);
}


TEST(MindSporeCkpt, ReferenceHasExpectedNamesAndShapes) {
  SKIP_WITHOUT_REFERENCE();
  auto tensors = read_mindspore_ckpt(kCkpt);
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"model.tok_embeddings.embedding_weight", {125696, 32}}};
  for (int l = 0; l < 2; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* w : {"wq", "wk", "wv", "wo"}) expected.push_back({p + "attention." + w + ".weight", {32, 32}});
    expected.push_back({p + "feed_forward.w1.weight", {88, 32}});
    expected.push_back({p + "feed_forward.w2.weight", {32, 88}});
    expected.push_back({p + "feed_forward.w3.weight", {88, 32}});
    expected.push_back({p + "attention_norm.weight", {32}});
    expected.push_back({p + "ffn_norm.weight", {32}});
  }
  expected.push_back({"model.norm_out.weight", {32}});
  expected.push_back({"lm_head.weight", {125696, 32}});

  ASSERT_EQ(tensors.size(), expected.size());
  for (size_t i = 0; i < tensors.size(); ++i) {  // file order is kept
    EXPECT_EQ(tensors[i].name, expected[i].first);
    EXPECT_EQ(tensors[i].shape, expected[i].second) << tensors[i].name;
    EXPECT_EQ(tensors[i].dtype, DType::BF16) << tensors[i].name;
    EXPECT_EQ(tensors[i].nbytes, static_cast<size_t>(tensors[i].numel()) * 2) << tensors[i].name;
    // Stored whole, so every tensor is a view into the one memory map.
    EXPECT_EQ(tensors[i].owner, tensors[0].owner) << tensors[i].name;
    ASSERT_NE(tensors[i].owner, nullptr);
  }
}

TEST(MindSporeCkpt, ReferenceIsByteIdenticalToSafetensors) {
  SKIP_WITHOUT_REFERENCE();
  auto ms = by_name(read_mindspore_ckpt(kCkpt));
  auto hf = by_name(formats::read_safetensors(kSafetensors));
  const int64_t H = 32;
  auto same = [&](const std::string& ms_name, const std::string& hf_bytes, const std::string& hf_what) {
    ASSERT_TRUE(ms.count(ms_name)) << ms_name;
    EXPECT_TRUE(contents(ms.at(ms_name)) == hf_bytes) << ms_name << " differs from " << hf_what;
  };
  auto whole = [&](const std::string& ms_name, const std::string& hf_name) {
    ASSERT_TRUE(hf.count(hf_name)) << hf_name;
    EXPECT_EQ(ms.at(ms_name).shape, hf.at(hf_name).shape) << ms_name;
    same(ms_name, contents(hf.at(hf_name)), hf_name);
  };
  whole("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight");
  whole("model.norm_out.weight", "model.norm.weight");
  whole("lm_head.weight", "lm_head.weight");
  for (int l = 0; l < 2; ++l) {
    std::string ms_p = "model.layers." + std::to_string(l) + ".";
    std::string hf_p = "model.layers." + std::to_string(l) + ".";
    const Tensor& w_pack = hf.at(hf_p + "self_attn.W_pack.weight");
    ASSERT_EQ(w_pack.shape, (std::vector<int64_t>{3 * H, H}));
    same(ms_p + "attention.wq.weight", rows(w_pack, 0, H), "W_pack rows [0, H)");
    same(ms_p + "attention.wk.weight", rows(w_pack, H, 2 * H), "W_pack rows [H, 2H)");
    same(ms_p + "attention.wv.weight", rows(w_pack, 2 * H, 3 * H), "W_pack rows [2H, 3H)");
    whole(ms_p + "attention.wo.weight", hf_p + "self_attn.o_proj.weight");
    whole(ms_p + "feed_forward.w1.weight", hf_p + "mlp.gate_proj.weight");
    whole(ms_p + "feed_forward.w2.weight", hf_p + "mlp.down_proj.weight");
    whole(ms_p + "feed_forward.w3.weight", hf_p + "mlp.up_proj.weight");
    whole(ms_p + "attention_norm.weight", hf_p + "input_layernorm.weight");
    whole(ms_p + "ffn_norm.weight", hf_p + "post_attention_layernorm.weight");
  }
}

// ---- Hand-built files --------------------------------------------------------------------------------

TEST(MindSporeCkpt, PackedAndUnpackedDimsParseAlike) {
  std::string data = floats({1, 2, 3, 4, 5, 6});
  for (bool packed : {false, true}) {
    auto ts = parse(value("w", tensor_proto({2, 3}, "Float32", data, packed)));
    ASSERT_EQ(ts.size(), 1u);
    EXPECT_EQ(ts[0].name, "w");
    EXPECT_EQ(ts[0].dtype, DType::F32);
    EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(contents(ts[0]), data);
  }
  // A packed run followed by an unpacked dim: protobuf parsers must accept both forms in one field.
  std::string mixed = field_bytes(1, varint(2)) + field_varint(1, 3) + field_bytes(2, "Float32") + field_bytes(3, data);
  EXPECT_EQ(parse(value("w", mixed))[0].shape, (std::vector<int64_t>{2, 3}));
}

TEST(MindSporeCkpt, MapsEveryTypeSpelling) {
  const std::pair<const char*, DType> types[] = {
      {"Float32", DType::F32}, {"Float16", DType::F16}, {"BFloat16", DType::BF16}, {"Float64", DType::F64},
      {"Int8", DType::I8},     {"Int16", DType::I16},   {"Int32", DType::I32},     {"Int64", DType::I64},
      {"UInt8", DType::U8},    {"Uint8", DType::U8},    {"Bool", DType::Bool}};
  for (auto [name, dtype] : types) {
    auto ts = parse(value("t", tensor_proto({3}, name, bytes_0_to(3 * dtype_info(dtype).block_bytes))));
    EXPECT_EQ(ts[0].dtype, dtype) << name;
  }
}

TEST(MindSporeCkpt, ScalarsWithNoDimsOrMindSporesDimsZero) {
  auto ts = parse(value("lr", tensor_proto({}, "Float32", floats({0.5f}))) +
                  value("epoch_num", tensor_proto({0}, "Int32", std::string("\x07\0\0\0", 4))) +
                  value("empty", tensor_proto({0}, "Float32", "")));
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_TRUE(ts[0].shape.empty());
  EXPECT_EQ(ts[0].nbytes, 4u);
  EXPECT_TRUE(ts[1].shape.empty());  // MindSpore writes a 0-d value as dims [0] with one element
  EXPECT_EQ(ts[1].dtype, DType::I32);
  EXPECT_EQ(ts[2].shape, (std::vector<int64_t>{0}));  // a genuinely empty tensor
  EXPECT_EQ(ts[2].nbytes, 0u);
}

TEST(MindSporeCkpt, SplitParameterWithSliceShapesConcatenatesAlongAxis0) {
  std::string a = floats({1, 2, 3, 4, 5, 6}), b = floats({7, 8, 9});
  auto ts = parse(value("before", tensor_proto({1}, "Float32", floats({0}))) +
                  value("w", tensor_proto({2, 3}, "Float32", a)) + value("w", tensor_proto({1, 3}, "Float32", b)) +
                  value("after", tensor_proto({1}, "Float32", floats({10}))));
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[1].name, "w");
  EXPECT_EQ(ts[1].shape, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(contents(ts[1]), a + b);
  EXPECT_NE(ts[1].owner, ts[0].owner);  // stitched into an owned buffer
  EXPECT_EQ(ts[2].name, "after");
}

TEST(MindSporeCkpt, SplitParameterAsMindSporeWritesItConcatenatesBytes) {
  // MindSpore's writer repeats the full shape in every part and may cut the bytes anywhere.
  std::string all = bytes_0_to(4 * 3 * 2);
  auto ts = parse(value("w", tensor_proto({4, 3}, "BFloat16", all.substr(0, 7))) +
                  value("w", tensor_proto({4, 3}, "BFloat16", all.substr(7, 10))) +
                  value("w", tensor_proto({4, 3}, "BFloat16", all.substr(17))));
  ASSERT_EQ(ts.size(), 1u);
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(ts[0].dtype, DType::BF16);
  EXPECT_EQ(contents(ts[0]), all);
}

TEST(MindSporeCkpt, SplitParameterErrors) {
  EXPECT_ERROR_WITH(value("w", tensor_proto({2, 3}, "Float32", floats({1, 2, 3, 4, 5, 6}))) +
                        value("w", tensor_proto({1, 4}, "Float32", floats({1, 2, 3, 4}))),
                    "parameter 'w'", "part 2", "[1, 4]", "[2, 3]", "axis 0");
  EXPECT_ERROR_WITH(value("w", tensor_proto({1, 2}, "Float32", floats({1, 2}))) +
                        value("w", tensor_proto({1, 2}, "Float16", bytes_0_to(4))),
                    "parameter 'w'", "part 2", "Float16", "Float32");
  EXPECT_ERROR_WITH(value("w", tensor_proto({4, 3}, "Float32", bytes_0_to(20))) +
                        value("w", tensor_proto({4, 3}, "Float32", bytes_0_to(20))),
                    "parameter 'w'", "40 content bytes in 2 parts", "Float32 [4, 3]", "expected 48");
  EXPECT_ERROR_WITH(value("w", tensor_proto({}, "Float32", floats({1}))) +
                        value("w", tensor_proto({}, "Float32", floats({2}))),
                    "parameter 'w'", "scalar");
  // A tag that comes back after another parameter is not a split, it is a duplicate.
  EXPECT_ERROR_WITH(value("w", tensor_proto({1}, "Float32", floats({1}))) +
                        value("v", tensor_proto({1}, "Float32", floats({1}))) +
                        value("w", tensor_proto({1}, "Float32", floats({1}))),
                    "parameter 'w'", "appears again");
}

TEST(MindSporeCkpt, SkipsUnknownFieldsOfEveryWireType) {
  std::string unknown = field_varint(9, 300) + varint(10 << 3 | 1) + std::string(8, 'x') + varint(11 << 3 | 5) +
                        std::string(4, 'y') + field_bytes(12, "zzz");
  std::string tensor = unknown + tensor_proto({2}, "Float32", floats({1, 2})) + unknown;
  std::string val = field_bytes(1, "w") + unknown + field_bytes(2, tensor) + unknown;
  auto ts = parse(unknown + field_bytes(1, val) + unknown);
  ASSERT_EQ(ts.size(), 1u);
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(contents(ts[0]), floats({1, 2}));
}

TEST(MindSporeCkpt, BadContentLengthNamesParameterTypeAndShape) {
  EXPECT_ERROR_WITH(value("model.layers.0.attention.wq.weight", tensor_proto({32, 32}, "BFloat16", bytes_0_to(2040))),
                    ": parameter 'model.layers.0.attention.wq.weight': 2040 content bytes for BFloat16 [32, 32], "
                    "expected 2048");
}

TEST(MindSporeCkpt, UnknownTensorTypeNamesTagAndType) {
  EXPECT_ERROR_WITH(value("w", tensor_proto({1}, "Float128", bytes_0_to(16))), "parameter 'w'",
                    "unsupported tensor_type 'Float128'");
  EXPECT_ERROR_WITH(value("name", tensor_proto({0}, "str", "abc")), "parameter 'name'", "'str'");
}

TEST(MindSporeCkpt, MissingRequiredFields) {
  std::string t = tensor_proto({1}, "Float32", floats({1}));
  EXPECT_ERROR_WITH(field_bytes(1, field_bytes(2, t)), "no tag");
  EXPECT_ERROR_WITH(field_bytes(1, field_bytes(1, "w")), "parameter 'w'", "no tensor");
  EXPECT_ERROR_WITH(value("w", field_varint(1, 1) + field_bytes(3, floats({1}))), "parameter 'w'", "no tensor_type");
  EXPECT_ERROR_WITH(value("w", field_varint(1, 1) + field_bytes(2, "Float32")), "parameter 'w'", "no tensor_content");
  EXPECT_ERROR_WITH("", "no parameters");
  EXPECT_ERROR_WITH(field_varint(2, 5), "no parameters");
  EXPECT_THROW(read_mindspore_ckpt(baichuan::testing::temp_path("mindspore_ckpt", "does_not_exist.ckpt")), Error);
}

TEST(MindSporeCkpt, WrongWireTypesAreErrors) {
  EXPECT_ERROR_WITH(field_varint(1, 5), "'value'", "wire type varint");
  EXPECT_ERROR_WITH(field_bytes(1, field_varint(1, 5)), "'tag'");
  EXPECT_ERROR_WITH(value("w", field_varint(1, 1) + field_varint(2, 1) + field_bytes(3, floats({1}))),
                    "'tensor_type'");
  EXPECT_ERROR_WITH(value("w", varint(1 << 3 | 5) + "abcd"), "'dims'", "fixed32");
  EXPECT_ERROR_WITH(varint(1 << 3 | 3), "unsupported wire type 3");  // groups
  EXPECT_ERROR_WITH(varint(1 << 3 | 7), "unsupported wire type 7");
  EXPECT_ERROR_WITH(varint(2), "invalid field number 0");
}

TEST(MindSporeCkpt, BadLengthsAndVarintsAreErrors) {
  std::string good = value("w", tensor_proto({2}, "Float32", floats({1, 2})));
  // Outer length claims more than the file holds.
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + varint(1000) + good, "claims 1000 bytes");
  // An inner length runs past its enclosing message (but not past the file).
  std::string inner = field_bytes(1, "w") + varint(2 << 3 | 2) + varint(50);
  EXPECT_ERROR_WITH(field_bytes(1, inner) + std::string(100, '\0'), "claims 50 bytes");
  // A length near 2^64 must not wrap around.
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + varint(~uint64_t{0}) + good, "claims");
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + std::string(10, '\xff') + "\x01", "overflows 64 bits");  // 11 bytes
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + std::string(9, '\xff') + "\x02", "overflows 64 bits");   // bit 64
  // The largest 10-byte varint is fine as a varint (and then too long as a length).
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + std::string(9, '\xff') + "\x01", "claims 18446744073709551615 bytes");
  EXPECT_ERROR_WITH(varint(1 << 3 | 2) + "\x80", "truncated varint");
  // A packed dims run that ends inside a varint.
  EXPECT_ERROR_WITH(value("w", field_bytes(1, "\x02\x83") + field_bytes(2, "Float32") + field_bytes(3, "")),
                    "truncated varint", "packed dims");
}

TEST(MindSporeCkpt, HostileDimsAreErrors) {
  EXPECT_ERROR_WITH(value("w", tensor_proto({-3, 2}, "Float32", "")), "parameter 'w'", "negative dimension -3");
  EXPECT_ERROR_WITH(value("w", tensor_proto({1LL << 40, 1LL << 40}, "Float32", "")), "parameter 'w'", "too large");
  EXPECT_ERROR_WITH(value("w", tensor_proto({1LL << 61}, "Float64", "")), "parameter 'w'");
  EXPECT_ERROR_WITH(value("w", tensor_proto(std::vector<int64_t>(40, 1), "Float32", floats({1}))), "more than 32 dims");
  // Split parts whose axis-0 sizes overflow when added (zero trailing dim, so no bytes).
  EXPECT_ERROR_WITH(value("w", tensor_proto({(1LL << 62) + 1, 0}, "Float32", "")) +
                        value("w", tensor_proto({1LL << 62, 0}, "Float32", "")) +
                        value("w", tensor_proto({1LL << 62, 0}, "Float32", "")),
                    "too large");
}

TEST(MindSporeCkpt, TruncationAtEveryByteIsAnError) {
  // Files where no prefix is itself a valid checkpoint: one parameter, and one split the MindSpore way.
  std::vector<std::string> files = {
      value("w", tensor_proto({2, 2}, "Float32", floats({1, 2, 3, 4}), true)),
      value("s", tensor_proto({3, 2}, "Float16", bytes_0_to(5))) +
          value("s", tensor_proto({3, 2}, "Float16", bytes_0_to(7)))};
  for (const auto& file : files) {
    ASSERT_NO_THROW(parse(file));
    for (size_t n = 0; n < file.size(); ++n) EXPECT_FALSE(parse_error(file.substr(0, n)).empty()) << n;
  }
  // With several parameters a cut between two Values leaves a valid file; every other cut is an error.
  std::string one = value("a", tensor_proto({1}, "Int8", "x"));
  std::string two = one + value("b", tensor_proto({2}, "Int8", "yz"));
  for (size_t n = 0; n < two.size(); ++n) {
    if (n == one.size()) {
      EXPECT_EQ(parse(two.substr(0, n)).size(), 1u);
    } else {
      EXPECT_FALSE(parse_error(two.substr(0, n)).empty()) << n;
    }
  }
}

}  // namespace mindspore_ckpt_test
