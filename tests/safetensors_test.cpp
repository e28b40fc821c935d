// The safetensors reader on hand-built files: values, and a clear Error for every malformed field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "error_matchers.h"
#include "formats/hf_folder.h"
#include "formats/safetensors.h"
#include "test_files.h"

namespace baichuan::formats {
namespace safetensors_test {  // named, not anonymous: the tests compile as a unity build

using baichuan::testing::throws_error_that;

std::string file_bytes(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

std::vector<Tensor> parse(const std::string& bytes) {
  auto image = std::make_shared<std::string>(bytes);
  return parse_safetensors(reinterpret_cast<const std::byte*>(image->data()), image->size(), image, "t.safetensors");
}

void expect_error(const std::string& bytes, const std::string& words) {
  EXPECT_THAT([&] { parse(bytes); },
              throws_error_that(::testing::AllOf(::testing::HasSubstr(words), ::testing::StartsWith("t.safetensors"))));
}

const std::string kValid = file_bytes(
    R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
    R"("b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]}})",
    std::string("\x00\x00\x80\x3f\x00\x00\x00\x40\x80\x3f\x00\xc0", 12));

TEST(Safetensors, ReadsNamesShapesTypesAndValues) {
  auto tensors = parse(kValid);
  ASSERT_EQ(tensors.size(), 2u);
  for (const auto& t : tensors) {
    if (t.name == "w") {
      EXPECT_EQ(t.dtype, DType::F32);
      EXPECT_EQ(t.shape, (std::vector<int64_t>{2}));
      EXPECT_EQ(load_float(t.dtype, t.data, 0), 1.0f);
      EXPECT_EQ(load_float(t.dtype, t.data, 1), 2.0f);
    } else {
      EXPECT_EQ(t.name, "b");
      EXPECT_EQ(t.dtype, DType::BF16);
      EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 1}));
      EXPECT_EQ(load_float(t.dtype, t.data, 0), 1.0f);
      EXPECT_EQ(load_float(t.dtype, t.data, 1), -2.0f);
    }
  }
}

// The shard index words its JSON faults as config.json and the safetensors header do (core/json_file.h).
TEST(Safetensors, ShardIndexJsonFaultsUseTheOneWording) {
  const auto folder = std::filesystem::path(testing::temp_path("safetensors", "shard_index"));
  std::filesystem::create_directories(folder);
  const std::string index = (folder / "model.safetensors.index.json").string();
  for (const auto& [text, words] : {std::pair{"{\"weight_map\": ", ": invalid JSON: "}, {"[1]", ": not a JSON object"}}) {
    std::ofstream(index) << text;
    EXPECT_THAT([&] { read_hf_weights(folder.string()); }, throws_error_that(::testing::StartsWith(index + words)))
        << text;
  }
  std::filesystem::remove_all(folder);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  for (size_t n = 0; n < kValid.size(); ++n) EXPECT_THROW(parse(kValid.substr(0, n)), Error) << n;
}

TEST(Safetensors, MalformedHeadersNameTheFault) {
  expect_error(file_bytes("{not json", ""), "header: invalid JSON");
  expect_error(file_bytes("[]", ""), "header: not a JSON object");
  expect_error(file_bytes(R"({"x":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "a"), "unknown dtype 'F8'");
  expect_error(file_bytes(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", "abcd"), "'dtype'");
  expect_error(file_bytes(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"), "shape");
  expect_error(file_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"), "expected 8");
  expect_error(file_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcd"), "outside");
  expect_error(file_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", "abcd"), "outside");
  expect_error(file_bytes(R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})", "abcd"),
               "too large");
  std::string huge_len(8, '\xff');
  expect_error(huge_len + "{}", "header length");
  // Two tensors sharing bytes (the hardening issue, point 10); touching ranges are fine.
  expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          std::string(8, '\0')),
               "the data of tensor 'b' overlaps the data of tensor 'a'");
  EXPECT_EQ(parse(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                             std::string(8, '\0')))
                .size(),
            3u);
}

}  // namespace
}  // namespace baichuan::formats
