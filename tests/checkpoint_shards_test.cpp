// A full fine-tuning checkpoint above --max-shard-size: its manifest (training_state.json) names the
// shard index and every shard, the files it names exist and are exactly those the index lists, and
// this project's loader and the resume path read the folder back to the same bits.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/json_file.h"
#include "core/mapped_file.h"
#include "model/checkpoint.h"
#include "preprocess_fixtures.h"
#include "shared_data.h"
#include "train/checkpoint_dir.h"
#include "train/train_model.h"

namespace baichuan {
namespace checkpoint_shards_test {  // named, not anonymous: the tests compile as a unity build

namespace fs = std::filesystem;
using testing::ScratchDir;

ModelConfig small_config() {
  return parse_model_config(nlohmann::json{{"vocab_size", 125696}, {"hidden_size", 8}, {"intermediate_size", 16},
                                           {"num_attention_heads", 4}, {"num_hidden_layers", 2}, {"model_max_length", 64}}
                                .dump(),
                            "checkpoint shards test", PositionEncoding::Rope);
}

// The checkpoint written with `max_shard_bytes`, read back through the manifest.
struct WrittenCheckpoint {
  std::string dir;
  nlohmann::json files;  // the manifest's "files"
};

WrittenCheckpoint write_checkpoint(const ScratchDir& scratch, const train::TrainModel<float>& model,
                                   const ModelConfig& config, uint64_t max_shard_bytes) {
  train::AdamW<float> optimizer(model.params().size());
  train::CheckpointState state;
  state.step = 3;
  state.settings = nlohmann::ordered_json::object();
  train::HfFolderSources sources{config, "", read_text_file(testing::tokenizer_path())};
  sources.max_shard_bytes = max_shard_bytes;
  const std::string dir = train::write_training_checkpoint(scratch / "out", state, model, optimizer, sources, "step,loss\n");
  return {dir, read_json_file(dir + "/" + train::kCheckpointManifest).at("files")};
}

TEST(CheckpointShards, ManifestNamesTheIndexAndEveryShardOfASplitCheckpoint) {
  REQUIRE_SHARED(testing::tokenizer_path());  // the loader wants the tokenizer of the vocabulary
  const ModelConfig config = small_config();
  train::TrainModel<float> model(train::TrainShape::from(config));
  train::randomize(model, 5, 0.05);
  ScratchDir scratch;
  const WrittenCheckpoint c = write_checkpoint(scratch, model, config, 2000);

  EXPECT_EQ(c.files.at("model"), "model.safetensors.index.json");
  EXPECT_FALSE(fs::exists(c.dir + "/model.safetensors"));
  // Every file the manifest names exists, and the shards it names are exactly those of the index.
  for (const auto& [key, value] : c.files.items())
    for (const auto& name : value.is_array() ? value : nlohmann::json::array({value}))
      EXPECT_TRUE(fs::exists(c.dir + "/" + name.get<std::string>())) << key << ": " << name;
  const nlohmann::json index = read_json_file(c.dir + "/model.safetensors.index.json");
  std::set<std::string> indexed;
  for (const auto& [tensor, shard] : index.at("weight_map").items()) indexed.insert(shard.get<std::string>());
  const auto listed = c.files.at("model_shards").get<std::set<std::string>>();
  EXPECT_GT(listed.size(), 1u);
  EXPECT_EQ(listed, indexed);

  // The loader reads the folder back to the same bits, and resume finds it and restores its state.
  const auto loaded = train::load_train_model<float>(open_checkpoint(c.dir));
  ASSERT_EQ(loaded.params().size(), model.params().size());
  EXPECT_EQ(0, std::memcmp(loaded.params().data(), model.params().data(), model.params().size() * sizeof(float)));
  EXPECT_EQ(train::find_training_checkpoint(scratch / "out"), c.dir);
  train::AdamW<float> optimizer(model.params().size());
  EXPECT_EQ(train::read_training_checkpoint(c.dir, loaded, optimizer).state.step, 3);
}

TEST(CheckpointShards, ManifestNamesTheSingleFileOfAnUnsplitCheckpoint) {
  REQUIRE_SHARED(testing::tokenizer_path());
  const ModelConfig config = small_config();
  train::TrainModel<float> model(train::TrainShape::from(config));
  ScratchDir scratch;
  const WrittenCheckpoint c = write_checkpoint(scratch, model, config, train::HfFolderSources::kDefaultMaxShardBytes);
  EXPECT_EQ(c.files.at("model"), "model.safetensors");
  EXPECT_FALSE(c.files.contains("model_shards"));
  EXPECT_TRUE(fs::exists(c.dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(c.dir + "/model.safetensors.index.json"));
}

}  // namespace checkpoint_shards_test
}  // namespace baichuan
