// libFuzzer target for a sharded Hugging Face folder's index (model.safetensors.index.json): the
// input is the index, beside two fixed small shards (model-00001-of-00002.safetensors holding "a"
// and "b", model-00002-of-00002.safetensors holding "c"). Properties: hf_weight_files lists only
// files inside the folder; weights that load are each named once, by the index, in the shard the
// index puts them in.
#include <cstdint>
#include <cstring>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/hf_folder.h"
#include "fuzz_support.h"

namespace fuzz_shard_index {

// A safetensors file of F32 scalars named `names`, each holding its index as a float.
std::string shard_bytes(const std::vector<std::string>& names) {
  nlohmann::json header = nlohmann::json::object();
  std::string body;
  for (size_t i = 0; i < names.size(); ++i) {
    header[names[i]] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {body.size(), body.size() + 4}}};
    float v = static_cast<float>(i);
    body.append(reinterpret_cast<const char*>(&v), 4);
  }
  std::string h = header.dump();
  uint64_t n = h.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + h + body;
}

const std::string& folder() {
  static const std::string dir = [] {
    const auto& d = fuzz_support::temp_dir();
    d.write("model-00001-of-00002.safetensors", shard_bytes({"a", "b"}));
    d.write("model-00002-of-00002.safetensors", shard_bytes({"c"}));
    return d.path();
  }();
  return dir;
}

}  // namespace fuzz_shard_index

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using fuzz_support::property_failed;
  const std::string& folder = fuzz_shard_index::folder();
  fuzz_support::temp_dir().write("model.safetensors.index.json", fuzz_support::as_text(data, size));
  try {
    for (const auto& file : formats::hf_weight_files(folder))
      if (file.rfind(folder + "/", 0) != 0 || file.find('/', folder.size() + 1) != std::string::npos)
        property_failed("hf_weight_files lists '", file, "', outside ", folder);
  } catch (const Error&) {
  }
  try {
    auto weights = formats::read_hf_weights(folder);
    auto index = nlohmann::json::parse(fuzz_support::as_text(data, size));
    const auto& map = index.at("weight_map");
    std::set<std::string> seen;
    for (const auto& t : weights.tensors) {
      if (!seen.insert(t.name).second) property_failed("tensor '", t.name, "' loaded twice");
      if (!map.contains(t.name)) property_failed("tensor '", t.name, "' loaded but not in the index");
    }
    if (seen.size() != map.size()) property_failed(seen.size(), " tensors loaded, the index lists ", map.size());
  } catch (const Error&) {
  }
  return 0;
}
