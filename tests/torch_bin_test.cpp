// PyTorch checkpoint reader: the two reference shards of the tiny Baichuan 2 13B, checked against the
// index, the config and bytes located independently; plus small archives built here byte by byte.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "error_matchers.h"
#include "formats/torch_bin.h"
#include "formats/torch_bin_memory.h"
#include "formats/torch_pickle.h"
#include "shared_data.h"

using namespace baichuan;
using baichuan::formats::read_torch_bin;
using baichuan::formats::read_torch_bin_memory;
using baichuan::formats::read_torch_pickle;
using namespace std::string_literals;

namespace torch_bin_test {  // named, not anonymous: the tests compile as a unity build

const std::string kTinyDir = baichuan::testing::shared_path("reference/b2-13b-tiny");
const std::string kShard1 = kTinyDir + "/pytorch_model-00001-of-00002.bin";
const std::string kShard2 = kTinyDir + "/pytorch_model-00002-of-00002.bin";

#define SKIP_WITHOUT_REFERENCE() \
  REQUIRE_SHARED(kShard1);       \
  REQUIRE_SHARED(kShard2)

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The tensors point into `bytes`, which must outlive them.
std::vector<Tensor> parse(const std::string& bytes, const std::string& path = "test.bin") {
  return read_torch_bin_memory(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), nullptr, path);
}

using baichuan::testing::error_message_of;

// ---- byte builders -------------------------------------------------------------------------------

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

struct ZipFile {
  std::string name, data;
  uint16_t method = 0;
};

// A minimal zip writer: stored entries, no CRCs (the reader does not check them), optional zip64
// records with saturated 32-bit fields so the reader must take the 64-bit ones.
std::string make_zip(const std::vector<ZipFile>& files, bool zip64 = false) {
  std::string out, cd;
  for (const ZipFile& f : files) {
    const uint64_t offset = out.size();
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(f.method, 2) + le(0, 4) + le(0, 4) +
           le(f.data.size(), 4) + le(f.data.size(), 4) + le(f.name.size(), 2) + le(0, 2) + f.name + f.data;
    std::string extra;
    uint64_t size32 = f.data.size(), offset32 = offset;
    if (zip64) {
      extra = le(1, 2) + le(24, 2) + le(f.data.size(), 8) + le(f.data.size(), 8) + le(offset, 8);
      size32 = offset32 = 0xffffffff;
    }
    cd += le(0x02014b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(f.method, 2) + le(0, 4) + le(0, 4) +
          le(size32, 4) + le(size32, 4) + le(f.name.size(), 2) + le(extra.size(), 2) + le(0, 2) + le(0, 2) +
          le(0, 2) + le(0, 4) + le(offset32, 4) + f.name + extra;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  if (zip64) {
    const uint64_t z64 = out.size();
    out += le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(files.size(), 8) +
           le(files.size(), 8) + le(cd.size(), 8) + le(cd_offset, 8);
    out += le(0x07064b50, 4) + le(0, 4) + le(z64, 8) + le(1, 4);
  }
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(files.size(), 2) + le(files.size(), 2) + le(cd.size(), 4) +
         le(zip64 ? 0xffffffff : cd_offset, 4) + le(0, 2);
  return out;
}

std::string unicode(const std::string& s) { return "X" + le(s.size(), 4) + s; }
std::string global(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
std::string int32(int32_t v) { return std::string("J") + le(static_cast<uint32_t>(v), 4); }
std::string int_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += int32(static_cast<int32_t>(x));
  return s + "t";
}

struct SynthTensor {
  std::string name, storage_type = "FloatStorage", key = "0";
  int64_t storage_numel = 6, offset = 0;
  std::vector<int64_t> size = {2, 3}, stride = {3, 1};
};

// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`, as torch.save writes it.
std::string rebuild_tensor(const SynthTensor& t) {
  return global("torch._utils", "_rebuild_tensor_v2") + "((" + unicode("storage") + global("torch", t.storage_type) +
         unicode(t.key) + unicode("cpu") + int32(static_cast<int32_t>(t.storage_numel)) + "tQ" +
         int32(static_cast<int32_t>(t.offset)) + int_tuple(t.size) + int_tuple(t.stride) + "\x89" +
         global("collections", "OrderedDict") + ")Rt" + "R";
}

std::string state_dict_pickle(const std::vector<SynthTensor>& tensors) {
  std::string s = "\x80\x02}(";
  for (const SynthTensor& t : tensors) s += unicode(t.name) + rebuild_tensor(t);
  return s + "u.";
}

std::string floats(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// An archive `archive/...` holding `pickle` and storages `archive/data/<key>`.
std::string make_checkpoint(const std::string& pickle, const std::map<std::string, std::string>& storages,
                            bool zip64 = false) {
  std::vector<ZipFile> files = {{"archive/data.pkl", pickle}};
  for (auto& [key, bytes] : storages) files.push_back({"archive/data/" + key, bytes});
  files.push_back({"archive/version", "3\n"});
  return make_zip(files, zip64);
}

const std::vector<float> kSeven = {10, 11, 12, 13, 14, 15, 16};


// ---- the reference shards ------------------------------------------------------------------------

TEST(TorchBin, ReferenceShardsHoldExactlyTheIndexedTensors) {
  SKIP_WITHOUT_REFERENCE();
  auto index = nlohmann::json::parse(read_file(kTinyDir + "/pytorch_model.bin.index.json"));
  auto config = nlohmann::json::parse(read_file(kTinyDir + "/config.json"));
  const int64_t hidden = config["hidden_size"], inter = config["intermediate_size"], vocab = config["vocab_size"];
  auto expected_shape = [&](const std::string& name) -> std::vector<int64_t> {
    if (name.find("W_pack") != std::string::npos) return {3 * hidden, hidden};
    if (name.find("o_proj") != std::string::npos) return {hidden, hidden};
    if (name.find("gate_proj") != std::string::npos || name.find("up_proj") != std::string::npos)
      return {inter, hidden};
    if (name.find("down_proj") != std::string::npos) return {hidden, inter};
    if (name.find("norm") != std::string::npos) return {hidden};
    return {vocab, hidden};  // embed_tokens, lm_head
  };

  size_t total = 0;
  for (const std::string& shard : {kShard1, kShard2}) {
    const std::string file = shard.substr(shard.rfind('/') + 1);
    std::set<std::string> want;
    for (auto& [name, where] : index["weight_map"].items())
      if (where == file) want.insert(name);
    auto tensors = read_torch_bin(shard);
    std::set<std::string> got;
    for (const Tensor& t : tensors) {
      got.insert(t.name);
      EXPECT_EQ(t.dtype, DType::BF16) << t.name;
      EXPECT_EQ(t.shape, expected_shape(t.name)) << t.name << " " << t.shape_str();
      EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * 2) << t.name;
      EXPECT_NE(t.owner, nullptr) << t.name;
    }
    EXPECT_EQ(tensors.size(), got.size()) << "duplicate names in " << file;
    EXPECT_EQ(got, want) << file;
    total += tensors.size();
  }
  EXPECT_EQ(total, index["weight_map"].size());
}

// The storage key of each tensor was read with pickletools.dis; the entry is then located here by a
// naive scan for its local header, independently of the reader's zip directory.
TEST(TorchBin, ReferenceBytesEqualTheStorageEntryFoundByScanning) {
  SKIP_WITHOUT_REFERENCE();
  struct Case {
    std::string shard, tensor, entry;
  };
  const std::vector<Case> cases = {
      {kShard1, "model.embed_tokens.weight", "pytorch_model-00001-of-00002/data/0"},
      {kShard1, "model.layers.0.self_attn.W_pack.weight", "pytorch_model-00001-of-00002/data/1"},
      {kShard1, "model.layers.0.input_layernorm.weight", "pytorch_model-00001-of-00002/data/6"},
      {kShard2, "model.layers.1.mlp.up_proj.weight", "pytorch_model-00002-of-00002/data/3"},
      {kShard2, "lm_head.weight", "pytorch_model-00002-of-00002/data/7"},
  };
  for (const Case& c : cases) {
    const std::string bytes = read_file(c.shard);
    const std::string header_sig("PK\x03\x04", 4);
    size_t data_at = std::string::npos;
    for (size_t pos = bytes.find(header_sig); pos != std::string::npos; pos = bytes.find(header_sig, pos + 1)) {
      if (pos + 30 > bytes.size()) break;
      size_t name_len = static_cast<uint8_t>(bytes[pos + 26]) | static_cast<uint8_t>(bytes[pos + 27]) << 8;
      size_t extra_len = static_cast<uint8_t>(bytes[pos + 28]) | static_cast<uint8_t>(bytes[pos + 29]) << 8;
      if (bytes.compare(pos + 30, name_len, c.entry) == 0 && name_len == c.entry.size()) {
        data_at = pos + 30 + name_len + extra_len;
        break;
      }
    }
    ASSERT_NE(data_at, std::string::npos) << c.entry;

    const Tensor* t = nullptr;
    auto tensors = read_torch_bin(c.shard);
    for (const Tensor& x : tensors)
      if (x.name == c.tensor) t = &x;
    ASSERT_NE(t, nullptr) << c.tensor;
    ASSERT_LE(data_at + t->nbytes, bytes.size());
    EXPECT_EQ(std::memcmp(t->data, bytes.data() + data_at, t->nbytes), 0) << c.tensor;
    // Zero copies: the view lies inside the mapped file, at the entry's offset.
    auto map = std::static_pointer_cast<const MappedFile>(t->owner);
    EXPECT_EQ(t->data, map->data() + data_at) << c.tensor;
  }
}

// Values read once with Python: zipfile.ZipFile(shard).read('<prefix>/data/<key>') + struct.unpack('<H').
TEST(TorchBin, ReferenceValuesMatchPythonZipfile) {
  SKIP_WITHOUT_REFERENCE();
  std::map<std::string, Tensor> by_name;
  for (Tensor& t : read_torch_bin(kShard1)) by_name[t.name] = std::move(t);
  auto value = [&](const std::string& name, size_t i) {
    const Tensor& t = by_name.at(name);
    return load_float(t.dtype, t.data, i);
  };
  const std::string norm = "model.layers.0.input_layernorm.weight";
  EXPECT_EQ(value(norm, 0), 1.078125f);
  EXPECT_EQ(value(norm, 1), 0.91015625f);
  EXPECT_EQ(value(norm, 2), 0.578125f);
  EXPECT_EQ(value(norm, 3), 0.99609375f);
  EXPECT_EQ(value(norm, 4), 1.4765625f);
  const std::string embed = "model.embed_tokens.weight";
  EXPECT_EQ(value(embed, 0), -0.51953125f);
  EXPECT_EQ(value(embed, 1), 0.458984375f);
  EXPECT_EQ(value(embed, 2), -0.65234375f);
  EXPECT_EQ(value(embed, 40), 0.578125f);
  EXPECT_EQ(value(embed, 5027839), 0.283203125f);
  const std::string gate = "model.layers.0.mlp.gate_proj.weight";
  EXPECT_EQ(value(gate, 0), -0.00897216796875f);
  EXPECT_EQ(value(gate, 1), -0.0233154296875f);
  EXPECT_EQ(value(gate, 4159), -0.0203857421875f);
}

TEST(TorchBin, TruncatedShardIsAnErrorAtEveryCut) {
  SKIP_WITHOUT_REFERENCE();
  const std::string bytes = read_file(kShard1);
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 200; ++i) cuts.push_back(bytes.size() * i / 200);
  for (size_t k = 1; k <= 100; ++k) cuts.push_back(bytes.size() - k);
  for (size_t cut : cuts) {
    const std::string prefix = bytes.substr(0, cut);  // exact size, so any over-read is out of bounds
    EXPECT_THROW(parse(prefix, "cut.bin"), Error) << "cut at " << cut;
  }
}

// Damage every byte of the pickle and of the end records: the reader must throw Error or return
// tensors that lie inside the buffer, never crash.
TEST(TorchBin, DamagedPickleAndDirectoryBytesNeverCrash) {
  SKIP_WITHOUT_REFERENCE();
  std::string bytes = read_file(kShard1);
  const size_t pickle_end = 1200, tail = 1100;
  auto check = [&](size_t pos) {
    for (char mask : {'\xff', '\x01', '\x80'}) {
      bytes[pos] ^= mask;
      try {
        for (const Tensor& t : parse(bytes)) {
          auto begin = reinterpret_cast<const std::byte*>(bytes.data());
          EXPECT_TRUE(t.data >= begin && t.data + t.nbytes <= begin + bytes.size()) << "byte " << pos;
        }
      } catch (const Error&) {
      }
      bytes[pos] ^= mask;
    }
  };
  for (size_t pos = 0; pos < pickle_end; ++pos) check(pos);
  for (size_t pos = bytes.size() - tail; pos < bytes.size(); ++pos) check(pos);
}

TEST(TorchBin, CorruptEndOfCentralDirectoryOffsetsAreErrors) {
  SKIP_WITHOUT_REFERENCE();
  const std::string good = read_file(kShard1);
  const size_t eocd = good.rfind(std::string("PK\x05\x06", 4));
  const size_t locator = good.rfind(std::string("PK\x06\x07", 4));
  const size_t z64 = good.rfind(std::string("PK\x06\x06", 4));
  ASSERT_NE(eocd, std::string::npos);
  ASSERT_NE(locator, std::string::npos);
  ASSERT_NE(z64, std::string::npos);
  struct Patch {
    size_t at;
    std::string bytes;
    std::string message;
  };
  const std::vector<Patch> patches = {
      {locator + 8, le(good.size() + 100, 8), "zip64 end of central directory offset"},
      {locator + 8, le(0, 8), "no zip64 end of central directory"},
      {z64 + 48, le(uint64_t{1} << 62, 8), "central directory"},  // directory offset
      {z64 + 40, le(~uint64_t{0}, 8), "central directory"},       // directory size
      {z64 + 24, le(uint64_t{1} << 40, 8) + le(uint64_t{1} << 40, 8), "entries"},  // entry counts
      {z64 + 48, le(5, 8), "signature"},                          // directory offset into garbage
      {eocd + 20, le(7, 2), "no end of central directory"},       // comment length past the end
  };
  for (const Patch& p : patches) {
    std::string bad = good;
    bad.replace(p.at, p.bytes.size(), p.bytes);
    std::string message = error_message_of([&] { parse(bad, "bad.bin"); });
    EXPECT_EQ(message.rfind("bad.bin: ", 0), 0u) << message;
    EXPECT_NE(message.find(p.message), std::string::npos) << message;
  }
}

// ---- synthetic archives --------------------------------------------------------------------------

TEST(TorchBin, ReadsSyntheticCheckpointWithOffsetView) {
  SynthTensor a{.name = "a", .storage_numel = 7, .offset = 1};
  SynthTensor b{.name = "b.weight", .storage_type = "HalfStorage", .key = "1", .storage_numel = 2, .size = {2},
                .stride = {1}};
  std::string halves = le(f32_to_f16(1.5f), 2) + le(f32_to_f16(-2.0f), 2);
  for (bool zip64 : {false, true}) {
    const std::string bytes = make_checkpoint(state_dict_pickle({a, b}), {{"0", floats(kSeven)}, {"1", halves}}, zip64);
    auto tensors = parse(bytes);
    ASSERT_EQ(tensors.size(), 2u);
    EXPECT_EQ(tensors[0].name, "a");
    EXPECT_EQ(tensors[0].dtype, DType::F32);
    EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(tensors[0].nbytes, 24u);
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(load_float(DType::F32, tensors[0].data, i), 11.0f + i);
    EXPECT_EQ(tensors[1].name, "b.weight");
    EXPECT_EQ(tensors[1].dtype, DType::F16);
    EXPECT_EQ(load_float(DType::F16, tensors[1].data, 0), 1.5f);
    EXPECT_EQ(load_float(DType::F16, tensors[1].data, 1), -2.0f);
  }
}

TEST(TorchBin, AcceptsParametersMetadataAndSizeOneStrides) {
  // torch.nn.Parameter wrapping, a state dict `_metadata` attribute set by BUILD, a size-1 dimension
  // with an arbitrary stride (still contiguous for PyTorch), and memoized values fetched back.
  SynthTensor t{.name = "p", .storage_numel = 6, .size = {2, 1, 3}, .stride = {3, 99, 1}};
  std::string pickle = "\x80\x02" + global("collections", "OrderedDict") + ")R" + "q\x00("s + unicode("p") +
                       global("torch._utils", "_rebuild_parameter") + "(" + rebuild_tensor(t) + "\x89" + "h\x00"s +
                       "tR" + "u" + "}" + unicode("_metadata") + global("collections", "OrderedDict") + ")R" +
                       "s" + "b" + ".";
  const std::string bytes = make_checkpoint(pickle, {{"0", floats(kSeven)}});
  auto tensors = parse(bytes);
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{2, 1, 3}));
  EXPECT_EQ(load_float(DType::F32, tensors[0].data, 5), 15.0f);
}

TEST(TorchBin, NonContiguousTensorIsAnError) {
  SynthTensor t{.name = "w", .stride = {1, 2}};
  auto message = error_message_of([&] {
    parse(make_checkpoint(state_dict_pickle({t}), {{"0", floats(kSeven)}}), "x.bin");
  });
  EXPECT_NE(message.find("x.bin: tensor 'w': size [2, 3] with stride [1, 2] is not contiguous"), std::string::npos)
      << message;
}

TEST(TorchBin, StorageTooSmallNamesBothSizes) {
  SynthTensor t{.name = "model.layers.0.mlp.up_proj.weight", .key = "12", .storage_numel = 6};
  auto message = error_message_of([&] {
    parse(make_checkpoint(state_dict_pickle({t}), {{"12", floats({1, 2})}}), "x.bin");
  });
  EXPECT_EQ(message, "x.bin: tensor 'model.layers.0.mlp.up_proj.weight': storage 'data/12' holds 8 bytes, "
                     "the tensor needs 24");
  // The tensor must also fit in the element count its persistent id declares.
  SynthTensor big{.name = "w", .storage_numel = 6, .offset = 1};
  message = error_message_of([&] {
    parse(make_checkpoint(state_dict_pickle({big}), {{"0", floats(kSeven)}}), "x.bin");
  });
  EXPECT_NE(message.find("has 6 elements, the tensor needs 7"), std::string::npos) << message;
}

TEST(TorchBin, MissingOrCompressedStorageIsAnError) {
  SynthTensor t{.name = "w"};
  auto message = error_message_of([&] {
    parse(make_checkpoint(state_dict_pickle({t}), {{"1", floats(kSeven)}}), "x.bin");
  });
  EXPECT_NE(message.find("storage 'data/0' is missing"), std::string::npos) << message;

  std::string zip = make_zip({{"archive/data.pkl", state_dict_pickle({t})}, {"archive/data/0", floats(kSeven), 8}});
  message = error_message_of([&] { parse(zip, "x.bin"); });
  EXPECT_NE(message.find("'archive/data/0' is compressed (method 8)"), std::string::npos) << message;
}

TEST(TorchBin, NotACheckpointIsAnError) {
  EXPECT_NE(error_message_of([&] { parse("", "x.bin"); }).find("x.bin: not a zip archive"), std::string::npos);
  EXPECT_NE(error_message_of([&] {
              parse(make_zip({{"a.txt", "hi"}}), "x.bin");
            }).find("no '<name>/data.pkl'"),
            std::string::npos);
  std::string big_endian = make_zip({{"archive/data.pkl", state_dict_pickle({})}, {"archive/byteorder", "big"}});
  EXPECT_NE(error_message_of([&] { parse(big_endian, "x.bin"); }).find("byteorder is 'big'"), std::string::npos);
  EXPECT_TRUE(parse(make_zip({{"archive/data.pkl", state_dict_pickle({})}, {"archive/byteorder", "little"}})).empty());
  EXPECT_NE(error_message_of([&] { read_torch_bin("/nonexistent/x.bin"); }).find("/nonexistent/x.bin: cannot open"),
            std::string::npos);
}

// Written by CPython's own pickler (protocol 4) for a state dict {'w': tensor, 'b': Parameter(tensor)}
// with `_metadata`, using stand-in torch classes and a persistent_id like torch.save's.
TEST(TorchPickle, ReadsPythonPicklerOutput) {
  const char kPickle[] =
    "\x80\x04\x95$\x01\x00\x00\x00\x00\x00\x00\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R"
    "\x94(\x8c\x01w\x94\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_tensor_v2\x94\x93\x94((\x8c\x07storage"
    "\x94\x8c\x05torch\x94\x8c\x0c" "FloatStorage\x94\x93\x94\x8c\x01" "0\x94\x8c\x03" "cpu\x94K\x06t\x94"
    "QK\x00K\x02K\x03\x86\x94K\x03K\x01\x86\x94\x89h\x02)R\x94t\x94R\x94\x8c\x01" "b\x94h\x05\x8c\x12_reb"
    "uild_parameter\x94\x93\x94h\x07((h\x08h\x09\x8c\x0f" "BFloat16Storage\x94\x93\x94\x8c\x01" "1\x94h"
    "\x0dK\x04t\x94QK\x01K\x03\x85\x94K\x01\x85\x94\x89h\x02)R\x94t\x94R\x94\x88h\x02)R\x94\x87\x94R\x94u"
    "}\x94\x8c\x09_metadata\x94h\x02)R\x94\x8c\x00\x94}\x94\x8c\x07version\x94K\x01sssb.";
  auto records = read_torch_pickle(std::string_view(kPickle, sizeof(kPickle) - 1), "x.bin");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].name, "w");
  EXPECT_EQ(records[0].dtype, DType::F32);
  EXPECT_EQ(records[0].storage_key, "0");
  EXPECT_EQ(records[0].storage_numel, 6);
  EXPECT_EQ(records[0].storage_offset, 0);
  EXPECT_EQ(records[0].size, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(records[0].stride, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(records[1].name, "b");
  EXPECT_EQ(records[1].dtype, DType::BF16);
  EXPECT_EQ(records[1].storage_key, "1");
  EXPECT_EQ(records[1].storage_numel, 4);
  EXPECT_EQ(records[1].storage_offset, 1);
  EXPECT_EQ(records[1].size, (std::vector<int64_t>{3}));
  EXPECT_EQ(records[1].stride, (std::vector<int64_t>{1}));
}

TEST(TorchPickle, ForbiddenGlobalIsRefusedByName) {
  std::string evil = "\x80\x02" + global("os", "system") + unicode("echo pwned") + "\x85R.";
  auto message = error_message_of([&] { read_torch_pickle(evil, "x.bin"); });
  EXPECT_NE(message.find("x.bin: data.pkl: opcode GLOBAL (0x63) at offset 2: global 'os.system' is not allowed"),
            std::string::npos)
      << message;
  // The same inside a full archive, and via protocol 4's STACK_GLOBAL.
  message = error_message_of([&] { parse(make_checkpoint(evil, {}), "x.bin"); });
  EXPECT_NE(message.find("'os.system' is not allowed"), std::string::npos) << message;
  std::string evil4 = "\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93.";
  message = error_message_of([&] { read_torch_pickle(evil4, "x.bin"); });
  EXPECT_NE(message.find("'builtins.eval' is not allowed"), std::string::npos) << message;
  // An allowed global may still not be called: storage types are only valid inside persistent ids.
  message = error_message_of([&] { read_torch_pickle("\x80\x02" + global("torch", "FloatStorage") + ")R.", "x.bin"); });
  EXPECT_NE(message.find("'torch.FloatStorage' cannot be called"), std::string::npos) << message;
}

TEST(TorchPickle, UnsupportedOpcodeIsNamedWithItsOffset) {
  auto message = error_message_of([&] { read_torch_pickle("\x80\x02}(i", "x.bin"); });
  EXPECT_EQ(message, "x.bin: data.pkl: opcode INST (0x69) at offset 4: not supported in a torch state dict");
  message = error_message_of([&] { read_torch_pickle("\x80\x02\xfe", "x.bin"); });
  EXPECT_NE(message.find("opcode unknown (0xfe) at offset 2"), std::string::npos) << message;
}

TEST(TorchPickle, HostilePicklesAreBoundedErrors) {
  auto rejects = [](const std::string& pickle, const std::string& needle) {
    auto message = error_message_of([&] { read_torch_pickle(pickle, "x.bin"); });
    EXPECT_NE(message.find(needle), std::string::npos) << "got: " << message;
  };
  rejects("\x80\x02X\xff\xff\xff\xff" "abc", "truncated");  // a 4 GiB string in 3 bytes
  rejects("\x80\x02h\x07.", "memo key 7 was never stored");
  rejects("\x80\x02t.", "no MARK");
  rejects("\x80\x02(R.", "stack underflow");  // cannot pop below a MARK
  rejects("\x80\x02]q\x00h\x00" "a."s, "not a state dict");  // a list appended to itself
  rejects(std::string(2'000'000, '('), "more than");       // marks are bounded
  std::string gets = "\x80\x02}q\x00"s;
  for (int i = 0; i < 1'100'000; ++i) gets += "h\x00"s;
  rejects(gets, "stack deeper than");  // the stack is bounded, even without new values
  rejects(")" + std::string(1'100'000, '\x85'), "values");        // nested tuples: values are bounded
  rejects("\x80\x02" + global("collections", "OrderedDict") + ")R" + unicode("k") + "Ns.", "entry 'k' is a None");
  rejects("\x80\x02}" + unicode("k") + "]s" + unicode("k") + "]s.", "is a list, not a tensor");
  rejects("\x80\x02\x8a\x09" + std::string(9, '\x01') + ".", "does not fit in 64 bits");
  std::string huge_rank = "(";
  for (int i = 0; i < 65; ++i) huge_rank += "K\x01";
  SynthTensor t{.name = "w"};
  std::string pickle = state_dict_pickle({t});
  pickle.replace(pickle.find(int_tuple(t.size)), int_tuple(t.size).size(), huge_rank + "t");
  rejects(pickle, "more than 64");
}

TEST(TorchPickle, TrailingBytesAfterStopAreIgnored) {
  EXPECT_TRUE(read_torch_pickle("\x80\x02}.extra", "x.bin").empty());
}

TEST(TorchPickle, DuplicateNamesAreAnError) {
  SynthTensor t{.name = "w"};
  auto message = error_message_of([&] { read_torch_pickle(state_dict_pickle({t, t}), "x.bin"); });
  EXPECT_NE(message.find("tensor 'w' appears twice"), std::string::npos) << message;
}

TEST(TorchPickle, Long1AndProtocol4OpcodesDecode) {
  // LONG1 for a storage size above 2^31 (common in 7B shards), sign extension, FRAME, MEMOIZE and
  // SHORT_BINUNICODE as written by protocol 4.
  SynthTensor t{.name = "w"};
  std::string pickle = state_dict_pickle({t});
  const std::string numel = int32(6);
  pickle.replace(pickle.find(numel + "tQ"), numel.size(), std::string("\x8a\x05\x00\x00\x00\x00\x01", 7));
  pickle.replace(pickle.find(int32(0)), int32(0).size(), "\x8a\x01\xff");  // storage offset -1
  pickle.replace(0, 3, "\x80\x04\x95" + le(pickle.size(), 8) + "}\x94");
  pickle.replace(pickle.find(unicode("cpu")), unicode("cpu").size(), "\x8c\x03" "cpu");
  auto records = read_torch_pickle(pickle, "x.bin");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].storage_numel, int64_t{1} << 32);
  EXPECT_EQ(records[0].storage_offset, -1);
  EXPECT_EQ(records[0].storage_key, "0");
  EXPECT_EQ(records[0].size, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(records[0].stride, (std::vector<int64_t>{3, 1}));
}

}  // namespace torch_bin_test
