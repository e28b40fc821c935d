#include "formats/hf_folder.h"

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "formats/torch_bin.h"

namespace baichuan::formats {

namespace {

using Reader = std::vector<Tensor> (*)(const std::string&);

// Shard file -> the tensor names the index puts in it.
std::map<std::string, std::set<std::string>> read_shard_index(const std::string& index_path) {
  const nlohmann::json index = parse_json_object(read_text_file(index_path), index_path);
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object())
    fail(index_path, ": missing object field 'weight_map'");
  std::map<std::string, std::set<std::string>> names_by_shard;
  for (auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) fail(index_path, ": weight_map entry '", name, "' is not a file name");
    auto file = shard.get<std::string>();
    if (file.find('/') != std::string::npos || file == "..")
      fail(index_path, ": weight_map entry '", name, "' names a file outside the folder: ", file);
    names_by_shard[file].insert(name);
  }
  return names_by_shard;
}

HfWeights read_sharded(const std::string& folder, const std::string& index_name, Reader reader) {
  std::string index_path = folder + "/" + index_name;
  auto names_by_shard = read_shard_index(index_path);
  HfWeights out;
  out.description = index_name + " (" + std::to_string(names_by_shard.size()) + " shards)";
  for (auto& [shard, names] : names_by_shard) {
    std::string shard_path = folder + "/" + shard;
    if (!file_exists(shard_path)) fail(index_path, ": shard '", shard, "' is missing from ", folder);
    std::set<std::string> found;
    for (auto& t : reader(shard_path)) {
      // A 4-bit weight `w` is listed as `w.data` and `w.quant_state`.
      const bool four_bit = !names.count(t.name) && names.count(t.name + ".data");
      if (!names.count(t.name) && !four_bit) continue;  // the index is authoritative about which shard holds what
      found.insert(t.name);
      if (four_bit) found.insert({t.name + ".data", t.name + ".quant_state"});
      out.tensors.push_back(std::move(t));
    }
    for (auto& name : names)
      if (!found.count(name)) fail(shard_path, ": tensor '", name, "' listed in ", index_name, " is not in this shard");
  }
  return out;
}

// The layouts in the order they are looked for: a single file first, then an index of shards.
const std::pair<const char*, Reader> singles[] = {{"model.safetensors", read_safetensors},
                                                  {"pytorch_model.bin", read_torch_bin}};
const std::pair<const char*, Reader> indexes[] = {{"model.safetensors.index.json", read_safetensors},
                                                  {"pytorch_model.bin.index.json", read_torch_bin}};

}  // namespace

std::vector<std::string> hf_weight_files(const std::string& folder) {
  for (auto& [name, reader] : singles)
    if (file_exists(folder + "/" + name)) return {folder + "/" + name};
  for (auto& [name, reader] : indexes) {
    std::string index_path = folder + "/" + name;
    if (!file_exists(index_path)) continue;
    std::vector<std::string> files{index_path};
    for (auto& [shard, names] : read_shard_index(index_path)) files.push_back(folder + "/" + shard);
    return files;
  }
  return {};
}

HfWeights read_hf_weights(const std::string& folder) {
  for (auto& [name, reader] : singles) {
    std::string path = folder + "/" + name;
    if (file_exists(path)) return {name, reader(path)};
  }
  for (auto& [name, reader] : indexes)
    if (file_exists(folder + "/" + name)) return read_sharded(folder, name, reader);
  fail(folder, ": no weights found (expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
               "pytorch_model.bin.index.json)");
}

}  // namespace baichuan::formats
