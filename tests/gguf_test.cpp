#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "formats/gguf.h"
#include "test_files.h"

using namespace baichuan;
using namespace baichuan::gguf;

namespace gguf_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error_that;

std::string temp_path(const std::string& name) { return baichuan::testing::temp_path("gguf_test", name); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Little-endian byte builder for hand-made files.
struct Bytes {
  std::string b;
  template <typename T>
  void put(T x) {
    char raw[sizeof x];
    std::memcpy(raw, &x, sizeof x);
    b.append(raw, sizeof x);
  }
  void u8(uint8_t x) { put(x); }
  void u16(uint16_t x) { put(x); }
  void u32(uint32_t x) { put(x); }
  void u64(uint64_t x) { put(x); }
  void f32(float x) { put(x); }
  void str(const std::string& s) {
    u64(s.size());
    b += s;
  }
  void pad_to(size_t a) { b.append((a - b.size() % a) % a, '\0'); }
  size_t size() const { return b.size(); }
};

template <typename T>
void patch(std::string& bytes, size_t pos, T x) {
  std::memcpy(bytes.data() + pos, &x, sizeof x);
}

File parse(const std::string& bytes) {
  // An exact-size heap copy, so a sanitizer build catches any read past the end.
  auto copy = std::make_shared<std::vector<std::byte>>(bytes.size());
  if (!bytes.empty()) std::memcpy(copy->data(), bytes.data(), bytes.size());
  return read_memory(copy->data(), copy->size(), copy, "m.gguf");
}

// Parsing `bytes` throws an Error that starts with the file name and holds every word.
void expect_error(const std::string& bytes, std::initializer_list<const char*> words) {
  std::vector<::testing::Matcher<std::string>> parts{::testing::StartsWith("m.gguf: ")};
  for (const char* w : words) parts.push_back(::testing::HasSubstr(w));
  EXPECT_THAT([&] { parse(bytes); }, throws_error_that(::testing::AllOfArray(parts)));
}

bool same(const Value& a, const Value& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (const auto* x = std::get_if<Array>(&a.v)) {
    const auto& y = std::get<Array>(b.v);
    if (x->elem_type != y.elem_type || x->items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i)
      if (!same(x->items[i], y.items[i])) return false;
    return true;
  }
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Array>) return false;  // handled above
        else return x == std::get<T>(b.v);
      },
      a.v);
}

// The hand-built file: written byte by byte from the spec, with the positions of fields to corrupt.
struct HandBuilt {
  std::string bytes;
  size_t version, tensor_count, kv_count, alignment_type, alignment_value, scores_count, flag_value;
  size_t t_name, t_n_dims, t_type, t_offset;
};

HandBuilt hand_built() {
  HandBuilt h;
  Bytes b;
  b.b = "GGUF";
  h.version = b.size();
  b.u32(3);
  h.tensor_count = b.size();
  b.u64(2);
  h.kv_count = b.size();
  b.u64(4);
  b.str("general.architecture");
  b.u32(8);  // STRING
  b.str("baichuan");
  b.str("general.alignment");
  h.alignment_type = b.size();
  b.u32(4);  // U32
  h.alignment_value = b.size();
  b.u32(32);
  b.str("t.scores");
  b.u32(9);  // ARRAY
  b.u32(6);  // of F32
  h.scores_count = b.size();
  b.u64(2);
  b.f32(0.5f);
  b.f32(-1.25f);
  b.str("x.flag");
  b.u32(7);  // BOOL
  h.flag_value = b.size();
  b.u8(1);
  // tensor "u": F16, ne [3], offset 0
  b.str("u");
  b.u32(1);
  b.u64(3);
  b.u32(1);
  b.u64(0);
  // tensor "t": F32, ne [4, 2] (shape [2, 4]), offset 32
  h.t_name = b.size() + 8;
  b.str("t");
  h.t_n_dims = b.size();
  b.u32(2);
  b.u64(4);
  b.u64(2);
  h.t_type = b.size();
  b.u32(0);
  h.t_offset = b.size();
  b.u64(32);
  b.pad_to(32);
  b.u16(0x3c00);  // 1
  b.u16(0x4000);  // 2
  b.u16(0xc000);  // -2
  b.pad_to(32);
  for (int i = 0; i < 8; ++i) b.f32(static_cast<float>(i));
  h.bytes = b.b;
  return h;
}

std::function<void(std::byte*, size_t)> copy_of(std::string data) {
  return [data](std::byte* out, size_t n) {
    ASSERT_EQ(n, data.size());
    std::memcpy(out, data.data(), n);
  };
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + seed * 7 + (i >> 8)) & 0xff);
  return s;
}


TEST(Gguf, HandBuiltFileParsesToKnownValues) {
  auto h = hand_built();
  std::string path = temp_path("hand.gguf");
  spit(path, h.bytes);
  File f = read_file(path);
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.alignment, 32u);
  ASSERT_EQ(f.metadata.size(), 4u);
  EXPECT_EQ(f.metadata[0].key, "general.architecture");
  EXPECT_EQ(f.get("general.architecture").as_string("k"), "baichuan");
  EXPECT_EQ(f.get("general.alignment").type, ValueType::U32);
  EXPECT_EQ(f.get("general.alignment").as_int("k"), 32);
  EXPECT_EQ(f.get("t.scores").as_floats("k"), (std::vector<float>{0.5f, -1.25f}));
  EXPECT_TRUE(f.get("x.flag").as_bool("k"));
  EXPECT_EQ(f.find("nope"), nullptr);

  ASSERT_EQ(f.tensors.size(), 2u);
  const Tensor& u = f.tensors[0];
  EXPECT_EQ(u.name, "u");
  EXPECT_EQ(u.dtype, DType::F16);
  EXPECT_EQ(u.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(u.nbytes, 6u);
  EXPECT_EQ(load_float(DType::F16, u.data, 0), 1.0f);
  EXPECT_EQ(load_float(DType::F16, u.data, 2), -2.0f);
  const Tensor& t = f.tensors[1];
  EXPECT_EQ(t.name, "t");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(t.nbytes, 32u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(load_float(DType::F32, t.data, i), static_cast<float>(i));
  EXPECT_EQ(t.data - u.data, 32);
  auto mapped = std::static_pointer_cast<const MappedFile>(t.owner);
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(t.data - mapped->data(), static_cast<ptrdiff_t>(h.bytes.size() - 32));
}

TEST(Gguf, WriterReproducesHandBuiltFileByteForByte) {
  auto h = hand_built();
  File f = parse(h.bytes);
  std::vector<TensorToWrite> tensors;
  for (const Tensor& t : f.tensors)
    tensors.push_back({t.name, t.dtype, t.shape, copy_of(std::string(reinterpret_cast<const char*>(t.data), t.nbytes))});
  std::string path = temp_path("rewritten.gguf");
  write_file(path, f.metadata, tensors);
  EXPECT_EQ(slurp(path), h.bytes);

  // And built from scratch with the public constructors.
  std::vector<KeyValue> md = {{"general.architecture", Value::str("baichuan")},
                              {"general.alignment", Value::u32(32)},
                              {"t.scores", Value::f32s({0.5f, -1.25f})},
                              {"x.flag", Value::boolean(true)}};
  write_file(path, md, tensors);
  EXPECT_EQ(slurp(path), h.bytes);
}

TEST(Gguf, ReadsVersion2) {
  auto h = hand_built();
  patch<uint32_t>(h.bytes, h.version, 2);
  EXPECT_EQ(parse(h.bytes).version, 2u);
}

TEST(Gguf, TruncationAtEveryByteIsAnError) {
  auto h = hand_built();
  ASSERT_NO_THROW(parse(h.bytes));
  for (size_t n = 0; n < h.bytes.size(); ++n) {
    EXPECT_THAT([&] { parse(h.bytes.substr(0, n)); }, throws_error_that(::testing::StartsWith("m.gguf: ")))
        << "truncated to " << n;
  }
}

TEST(Gguf, CorruptedFieldsAreNamed) {
  auto h = hand_built();
  auto with = [&](auto change) {
    std::string b = h.bytes;
    change(b);
    return b;
  };
  expect_error(with([](std::string& b) { b[0] = 'X'; }), {"not a GGUF file"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.version, 1); }), {"version 1", "not supported"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.version, 0x03000000); }), {"big-endian"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.tensor_count, uint64_t{1} << 60); }),
               {"tensor count 1152921504606846976", "cannot fit"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.kv_count, uint64_t{1} << 60); }),
               {"metadata count", "cannot fit"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.scores_count, uint64_t{1} << 60); }),
               {"metadata key 't.scores'", "array of", "cannot fit"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, 24, uint64_t{1} << 62); }),
               {"metadata entry #0", "string length"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.alignment_type, 13); }),
               {"metadata key 'general.alignment'", "unknown value type 13"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.alignment_type, 5); }),
               {"general.alignment", "expected U32"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.alignment_value, 48); }),
               {"general.alignment", "48", "power of two"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.alignment_value, 64); }),
               {"tensor 't'", "offset 32", "not a multiple of the alignment 64"});
  expect_error(with([&](std::string& b) { patch<uint8_t>(b, h.flag_value, 2); }),
               {"metadata key 'x.flag'", "BOOL value 2"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.t_type, 4); }), {"tensor 't'", "ggml type 4"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.t_type, 8); }),
               {"tensor 't'", "innermost dimension 4", "Q8_0 block size 32"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_offset, 33); }),
               {"tensor 't'", "offset 33", "not a multiple of the alignment 32"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_offset, 4096); }),
               {"tensor 't'", "data [offset 4096, 32 bytes]", "runs past the end of the file"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_offset, uint64_t{1} << 63); }),
               {"tensor 't'", "runs past the end of the file"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_offset, 0); }),
               {"the data of tensor 't' overlaps the data of tensor 'u'"});
  expect_error(with([&](std::string& b) { b[h.t_name] = 'u'; }), {"tensor 'u'", "duplicate"});
  expect_error(with([&](std::string& b) { patch<uint32_t>(b, h.t_n_dims, 9); }), {"tensor 't'", "9 dimensions"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_n_dims + 4, uint64_t{1} << 63); }),
               {"tensor 't'", "too large"});
  expect_error(with([&](std::string& b) { patch<uint64_t>(b, h.t_n_dims + 4, uint64_t{1} << 62); }),
               {"tensor 't'", "shape is too large"});
}

TEST(Gguf, NestedArraysAreCappedInDepth) {
  auto nested = [](int depth) {
    Bytes b;
    b.b = "GGUF";
    b.u32(3);
    b.u64(0);
    b.u64(1);
    b.str("a");
    b.u32(9);
    for (int i = 1; i < depth; ++i) {
      b.u32(9);
      b.u64(1);
    }
    b.u32(0);
    b.u64(0);
    return b.b;
  };
  File f = parse(nested(kMaxArrayDepth));
  EXPECT_EQ(f.get("a").as_array("a").items.size(), 1u);
  expect_error(nested(kMaxArrayDepth + 1), {"metadata key 'a'", "nested"});
}

TEST(Gguf, MetadataOnlyFileNeedsNoPadding) {
  Bytes b;
  b.b = "GGUF";
  b.u32(3);
  b.u64(0);
  b.u64(1);
  b.str("k");
  b.u32(10);
  b.u64(7);
  File f = parse(b.b);
  EXPECT_EQ(f.get("k").as_int("k"), 7);
  EXPECT_TRUE(f.tensors.empty());
}

TEST(Gguf, DuplicateKeysAreRejected) {
  Bytes b;
  b.b = "GGUF";
  b.u32(3);
  b.u64(0);
  b.u64(2);
  for (int i = 0; i < 2; ++i) {
    b.str("k");
    b.u32(0);
    b.u8(1);
  }
  expect_error(b.b, {"duplicate metadata key 'k'"});
}

TEST(Gguf, EveryValueTypeRoundTrips) {
  std::vector<std::string> vocab;
  for (int i = 0; i < 125696; ++i) vocab.push_back("tok" + std::to_string(i) + (i % 7 ? "" : "\xe2\x96\x81"));
  Array nested{ValueType::Array, {Value::i32s({1, -2}), Value::i32s({}), Value::i32s({3})}};
  Array f64s{ValueType::F64, {{ValueType::F64, 1e300}, {ValueType::F64, -0.0}}};
  Array bools{ValueType::Bool, {Value::boolean(true), Value::boolean(false)}};
  Array u64s{ValueType::U64, {Value::u64(UINT64_MAX), Value::u64(0)}};
  std::vector<KeyValue> md = {
      {"v.u8", {ValueType::U8, uint64_t{255}}},
      {"v.i8", {ValueType::I8, int64_t{-128}}},
      {"v.u16", {ValueType::U16, uint64_t{65535}}},
      {"v.i16", {ValueType::I16, int64_t{-32768}}},
      {"v.u32", Value::u32(UINT32_MAX)},
      {"v.i32", Value::i32(INT32_MIN)},
      {"v.f32", Value::f32(3.25f)},
      {"v.bool", Value::boolean(false)},
      {"v.string", Value::str("h\xc3\xa9llo\n")},
      {"v.empty_string", Value::str("")},
      {"v.u64", Value::u64(UINT64_MAX)},
      {"v.i64", {ValueType::I64, std::numeric_limits<int64_t>::min()}},
      {"v.f64", {ValueType::F64, 1e-300}},
      {"a.strings", Value::strings(vocab)},
      {"a.f32", Value::f32s({1.5f, -2.0f, INFINITY})},
      {"a.i32", Value::i32s({INT32_MAX, 0, -1})},
      {"a.bytes", Value::bytes(std::string("\x00\xff\x7f", 3))},
      {"a.empty", Value::f32s({})},
      {"a.nested", {ValueType::Array, nested}},
      {"a.f64", {ValueType::Array, f64s}},
      {"a.bool", {ValueType::Array, bools}},
      {"a.u64", {ValueType::Array, u64s}},
  };
  std::string path = temp_path("values.gguf");
  write_file(path, md, {});
  File f = read_file(path);
  ASSERT_EQ(f.metadata.size(), md.size());
  for (size_t i = 0; i < md.size(); ++i) {
    EXPECT_EQ(f.metadata[i].key, md[i].key);
    EXPECT_TRUE(same(f.metadata[i].value, md[i].value)) << md[i].key;
  }
  EXPECT_EQ(f.get("a.strings").as_strings("a.strings"), vocab);
  EXPECT_EQ(f.get("a.i32").as_ints("a.i32"), (std::vector<int32_t>{INT32_MAX, 0, -1}));
  EXPECT_EQ(f.get("a.bytes").as_bytes("a.bytes"), std::string("\x00\xff\x7f", 3));
  EXPECT_EQ(f.get("v.i8").as_int("k"), -128);
  EXPECT_EQ(f.get("v.u16").as_float("k"), 65535.0);
  EXPECT_TRUE(f.tensors.empty());
}

TEST(Gguf, AccessorsNameTheKeyOnTypeMismatch) {
  auto expect_msg = [](auto call, const char* word) {
    EXPECT_THAT(call,
                throws_error_that(::testing::AllOf(::testing::StartsWith("m.gguf: k.x"), ::testing::HasSubstr(word))));
  };
  const std::string key = "m.gguf: k.x";
  expect_msg([&] { Value::str("s").as_int(key); }, "integer");
  expect_msg([&] { Value::u64(UINT64_MAX).as_int(key); }, "too large");
  expect_msg([&] { Value::u32(1).as_string(key); }, "STRING");
  expect_msg([&] { Value::u32(1).as_bool(key); }, "BOOL");
  expect_msg([&] { Value::str("s").as_float(key); }, "number");
  expect_msg([&] { Value::f32s({1}).as_strings(key); }, "ARRAY of F32");
  expect_msg([&] { Value::i32s({1}).as_bytes(key); }, "U8");
  expect_msg([&] { Value::u32(1).as_array(key); }, "ARRAY");
  expect_msg([&] { Value{ValueType::Array, Array{ValueType::I64, {{ValueType::I64, int64_t{1} << 40}}}}.as_ints(key); },
             "32 bits");
  File f;
  f.path = "m.gguf";
  EXPECT_THAT([&] { f.get("missing.key"); },
              throws_error_that(::testing::Eq("m.gguf: missing metadata key 'missing.key'")));
}

TEST(Gguf, TensorsRoundTrip) {
  struct Case {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Case> cases = {
      {"f32.2d", DType::F32, {3, 5}},      {"f32.1d", DType::F32, {7}},
      {"f32.scalar", DType::F32, {}},      {"f32.empty", DType::F32, {0, 4}},
      {"f16.3d", DType::F16, {2, 3, 4}},   {"bf16.1d", DType::BF16, {6}},
      {"q8_0.2d", DType::Q8_0, {4, 64}},   {"q4_k.2d", DType::Q4_K, {2, 256}},
      {"q4_k.3d", DType::Q4_K, {2, 2, 512}}, {"q6_k.1d", DType::Q6_K, {256}},
      {"i32.1d", DType::I32, {5}},
  };
  std::vector<TensorToWrite> tensors;
  std::vector<std::string> contents;
  for (size_t i = 0; i < cases.size(); ++i) {
    size_t n = bytes_for(cases[i].dtype, checked_numel(cases[i].shape, "t"), "t");
    contents.push_back(pattern(n, static_cast<unsigned>(i)));
    tensors.push_back({cases[i].name, cases[i].dtype, cases[i].shape, copy_of(contents.back())});
  }
  for (size_t alignment : {size_t{32}, size_t{64}}) {
    std::string path = temp_path("tensors.gguf");
    write_file(path, {{"general.architecture", Value::str("baichuan")}}, tensors, alignment);
    File f = read_file(path);
    EXPECT_EQ(f.alignment, alignment);
    EXPECT_EQ(f.find("general.alignment") != nullptr, alignment != 32);
    ASSERT_EQ(f.tensors.size(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      const Tensor& t = f.tensors[i];
      EXPECT_EQ(t.name, cases[i].name);
      EXPECT_EQ(t.dtype, cases[i].dtype) << t.name;
      EXPECT_EQ(t.shape, cases[i].shape) << t.name;
      ASSERT_EQ(t.nbytes, contents[i].size()) << t.name;
      EXPECT_EQ(std::memcmp(t.data, contents[i].data(), t.nbytes), 0) << t.name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % alignment, 0u) << t.name;  // the map is page-aligned
    }
    EXPECT_EQ(slurp(path).size() % alignment, 0u);
  }
}

TEST(Gguf, WriterRejectsBadInput) {
  std::string path = temp_path("bad.gguf");
  std::filesystem::remove(path);
  auto expect_write_error = [&](const std::vector<KeyValue>& md, const std::vector<TensorToWrite>& ts, const char* word,
                                size_t alignment = 32) {
    EXPECT_THAT([&] { write_file(path, md, ts, alignment); },
                throws_error_that(::testing::AllOf(::testing::StartsWith(path), ::testing::HasSubstr(word))))
        << word;
    EXPECT_FALSE(file_exists(path)) << word;
  };
  auto zeros = [](std::byte* out, size_t n) { std::memset(out, 0, n); };
  expect_write_error({}, {{"a", DType::F32, {2}, zeros}, {"a", DType::F32, {2}, zeros}}, "duplicate tensor name");
  expect_write_error({}, {{"q", DType::Q8_0, {2, 33}, zeros}}, "block size 32");
  expect_write_error({}, {{"u", DType::U8, {2}, zeros}}, "no GGUF type");
  expect_write_error({}, {{"d", DType::F32, std::vector<int64_t>(9, 1), zeros}}, "9 dimensions");
  expect_write_error({}, {{"n", DType::F32, {-1}, zeros}}, "negative");
  expect_write_error({}, {}, "power of two", 48);
  expect_write_error({{"general.alignment", Value::u32(64)}}, {}, "general.alignment");
  expect_write_error({{"k", Value::u32(1)}, {"k", Value::u32(2)}}, {}, "duplicate metadata key 'k'");
  expect_write_error({{"k", {ValueType::U8, uint64_t{300}}}}, {}, "300 does not fit in U8");
  expect_write_error({{"k", {ValueType::I16, int64_t{-40000}}}}, {}, "does not fit in I16");
  expect_write_error({{"k", {ValueType::U32, std::string("x")}}}, {}, "metadata key 'k'");
  expect_write_error({{"k", {ValueType::Array, Array{ValueType::F32, {Value::u32(1)}}}}}, {}, "item 0 has type U32");
  Value deep = Value::i32s({1});
  for (int i = 0; i < kMaxArrayDepth; ++i) deep = {ValueType::Array, Array{ValueType::Array, {deep}}};
  expect_write_error({{"deep", deep}}, {}, "nested");
  // A producer that throws leaves no file behind either.
  expect_write_error({}, {{"p", DType::F32, {2}, [](std::byte*, size_t) { fail(temp_path("bad.gguf"), ": producer failed"); }}},
                     "producer failed");
}

TEST(Gguf, MissingFileIsAnError) {
  EXPECT_THROW(read_file(temp_path("does_not_exist.gguf")), Error);
}

TEST(Gguf, GgmlTypeIdsMatchTheSpec) {
  EXPECT_EQ(ggml_from_dtype(DType::F32), 0u);
  EXPECT_EQ(ggml_from_dtype(DType::Q8_0), 8u);
  EXPECT_EQ(ggml_from_dtype(DType::Q4_K), 12u);
  EXPECT_EQ(ggml_from_dtype(DType::BF16), 30u);
  for (uint32_t id = 0; id < 40; ++id) {
    try {
      DType d = dtype_from_ggml(id, "x");
      EXPECT_EQ(ggml_from_dtype(d), id);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(id)), std::string::npos);
    }
  }
}

}  // namespace gguf_test
