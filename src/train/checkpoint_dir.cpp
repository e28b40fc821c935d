#include "train/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <algorithm>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "train/lora_export.h"

namespace baichuan::train {

namespace fs = std::filesystem;

namespace {

std::string checkpoint_name(int64_t step) {
  char name[48];
  std::snprintf(name, sizeof name, "checkpoint-%06lld", static_cast<long long>(step));
  return name;
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail(path.string(), ": cannot open to sync: ", std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) fail(path.string(), ": fsync failed: ", std::strerror(err));
}

// Test hook, so tests can reach the middle of a checkpoint write deterministically:
// BAICHUAN_CHECKPOINT_FAULT=pause:STEP stops (sleeps) after model.safetensors of checkpoint STEP is
// written, announcing it on stderr; =fail:STEP fails there as a full disk would.
void checkpoint_fault_hook(int64_t step, const fs::path& tmp) {
  const char* spec = std::getenv("BAICHUAN_CHECKPOINT_FAULT");
  if (!spec) return;
  const std::string s = spec;
  const auto colon = s.find(':');
  if (colon == std::string::npos || std::stoll(s.substr(colon + 1)) != step) return;
  if (s.compare(0, colon, "pause") == 0) {
    std::fprintf(stderr, "checkpoint: paused inside the write of %s\n", tmp.c_str());
    std::fflush(stderr);
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (s.compare(0, colon, "fail") == 0)
    fail((tmp / "optimizer.safetensors").string(), ": write failed: No space left on device (injected by BAICHUAN_CHECKPOINT_FAULT)");
}

std::vector<Tensor> optimizer_tensors(const std::vector<ParamInfo>& layout, const AdamW<float>& optimizer) {
  std::vector<Tensor> tensors;
  append_flat_views(tensors, layout, "adamw_m.", optimizer.m().data());
  append_flat_views(tensors, layout, "adamw_v.", optimizer.v().data());
  return tensors;
}

// What differs between a full and a LoRA checkpoint.
struct CheckpointKind {
  const char* format;
  size_t parameters;
  const std::vector<ParamInfo>& layout;
  // Writes the weights into `dir` and returns their entries of the manifest's "files" (the optimizer
  // and the log are added after them).
  std::function<nlohmann::ordered_json(const fs::path& dir)> write_weights;
};

std::string write_checkpoint_folder(const std::string& out_dir, const CheckpointState& state, const CheckpointKind& kind,
                                    const AdamW<float>& optimizer, const std::string& csv_log) {
  const fs::path out(out_dir), final_dir = out / checkpoint_name(state.step),
                 tmp = out / cat(".", checkpoint_name(state.step), ".tmp");
  try {
    fs::remove_all(tmp);  // a stale folder of a killed run
    fs::create_directories(tmp);
    nlohmann::ordered_json files = kind.write_weights(tmp);
    files["optimizer"] = "optimizer.safetensors";
    files["log"] = "train_log.csv";
    checkpoint_fault_hook(state.step, tmp);
    formats::write_safetensors((tmp / "optimizer.safetensors").string(), optimizer_tensors(kind.layout, optimizer));
    {
      AtomicFile log((tmp / "train_log.csv").string());
      log.write(csv_log);
      log.commit();
    }
    nlohmann::ordered_json manifest;
    manifest["format"] = kind.format;
    manifest["version"] = 1;
    manifest["step"] = state.step;
    manifest["data_position"] = {{"epoch", state.epoch}, {"index", state.index}};
    manifest["rng"] = {{"kind", "splitmix64 Fisher-Yates per epoch"}, {"seed", state.seed}};
    manifest["tokens"] = state.tokens;
    manifest["seconds"] = state.seconds;
    manifest["parameters"] = kind.parameters;
    manifest["files"] = files;
    manifest["settings"] = state.settings;
    manifest["command_line"] = state.command_line;
    {
      AtomicFile f((tmp / kCheckpointManifest).string());
      f.write(manifest.dump(2) + "\n");
      f.commit();
    }
    fsync_path(tmp);
    // Re-saving a step that exists (a resumed run): move the old one aside until the new one is in.
    const fs::path old = out / cat(".", checkpoint_name(state.step), ".old");
    const bool replacing = fs::exists(final_dir);
    if (replacing) {
      fs::remove_all(old);
      fs::rename(final_dir, old);
    }
    fs::rename(tmp, final_dir);
    fsync_path(out);
    if (replacing) fs::remove_all(old);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    fail("checkpoint at step ", state.step, " not written (earlier checkpoints in ", out_dir,
         " are intact): ", e.what());
  }
  // The new checkpoint is complete: the older ones can go.
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name < checkpoint_name(state.step)) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
  return final_dir.string();
}

// Reads the manifest of a checkpoint of `format` with `parameters` trainable values, and the optimizer
// state of `layout`.
LoadedCheckpoint read_checkpoint_folder(const std::string& dir, const char* format, size_t parameters,
                                        const std::vector<ParamInfo>& layout, AdamW<float>& optimizer);

}  // namespace

std::string write_training_checkpoint(const std::string& out_dir, const CheckpointState& state,
                                      const TrainModel<float>& model, const AdamW<float>& optimizer,
                                      const HfFolderSources& sources, const std::string& csv_log) {
  const CheckpointKind kind{kCheckpointFormat, model.params().size(), model.layout(), [&](const fs::path& dir) {
                              // "model": the file a reader opens first; "model_shards": what a sharded index lists.
                              const std::vector<std::string> written = write_hf_folder(dir.string(), model, sources);
                              nlohmann::ordered_json files = {{"model", written.front()}};
                              if (written.size() > 1) files["model_shards"] = std::vector(written.begin() + 1, written.end());
                              return files;
                            }};
  return write_checkpoint_folder(out_dir, state, kind, optimizer, csv_log);
}

std::string write_training_checkpoint(const std::string& out_dir, const CheckpointState& state,
                                      const LoraModel<float>& lora, const AdamW<float>& optimizer,
                                      const HfFolderSources&, const std::string& csv_log) {
  const CheckpointKind kind{kLoraCheckpointFormat, lora.params().size(), lora.layout(), [&](const fs::path& dir) {
                              // A PEFT folder: the checkpoint is also an adapter generate --lora reads.
                              write_peft_adapter(dir.string(),
                                                 to_lora_adapter(lora, state.settings.value("base_model", "")));
                              return nlohmann::ordered_json{{"adapter", kLoraCheckpointWeights}};
                            }};
  return write_checkpoint_folder(out_dir, state, kind, optimizer, csv_log);
}

std::string find_training_checkpoint(const std::string& path) {
  const fs::path p(path);
  if (fs::exists(p / kCheckpointManifest)) return p.string();
  if (!fs::is_directory(p)) fail("--resume ", path, ": not a folder");
  std::string best;
  for (const auto& entry : fs::directory_iterator(p)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && fs::exists(entry.path() / kCheckpointManifest) && name > best)
      best = name;
  }
  if (best.empty()) fail("--resume ", path, ": no ", kCheckpointManifest, " in it and no complete checkpoint-* folder");
  return (p / best).string();
}

namespace {

LoadedCheckpoint read_checkpoint_folder(const std::string& dir, const char* format, size_t parameters,
                                        const std::vector<ParamInfo>& layout, AdamW<float>& optimizer) {
  const std::string manifest_path = (fs::path(dir) / kCheckpointManifest).string();
  const nlohmann::json j = read_json_file(manifest_path);
  auto field = [&](const char* name) -> const nlohmann::json& {
    if (!j.contains(name)) fail(manifest_path, ": field '", name, "' is missing");
    return j.at(name);
  };
  if (field("format") != format)
    fail(manifest_path, ": field 'format' is ", field("format").dump(), ", expected \"", format, "\"");
  if (field("version") != 1) fail(manifest_path, ": field 'version' ", field("version").dump(), " is not supported");
  LoadedCheckpoint out;
  try {
    out.state.step = field("step").get<int64_t>();
    out.state.epoch = field("data_position").at("epoch").get<int64_t>();
    out.state.index = field("data_position").at("index").get<int64_t>();
    out.state.seed = field("rng").at("seed").get<uint64_t>();
    out.state.tokens = field("tokens").get<int64_t>();
    out.state.seconds = field("seconds").get<double>();
    out.state.settings = field("settings");
    out.state.command_line = field("command_line").get<std::string>();
    if (field("parameters").get<size_t>() != parameters)
      fail(manifest_path, ": field 'parameters' is ", field("parameters").dump(), " but the model has ", parameters,
           " trainable parameters");
  } catch (const nlohmann::json::exception& e) {
    fail(manifest_path, ": ", e.what());
  }
  const std::string opt_path = (fs::path(dir) / "optimizer.safetensors").string();
  const std::vector<Tensor> tensors = formats::read_safetensors(opt_path);
  std::vector<float> m(parameters), v(parameters);
  size_t found = 0;
  for (const Tensor& t : tensors) {
    const bool is_m = t.name.rfind("adamw_m.", 0) == 0, is_v = t.name.rfind("adamw_v.", 0) == 0;
    if (!is_m && !is_v) fail(opt_path, ": unexpected tensor '", t.name, "'");
    const std::string name = t.name.substr(8);
    const auto p_it = std::find_if(layout.begin(), layout.end(), [&](const ParamInfo& p) { return p.name == name; });
    if (p_it == layout.end()) fail(opt_path, ": tensor '", t.name, "' names no trainable parameter of this run");
    const ParamInfo& p = *p_it;
    if (t.dtype != DType::F32 || t.nbytes != p.numel * sizeof(float))
      fail(opt_path, ": tensor '", t.name, "' is not F32 with ", p.numel, " values");
    std::memcpy((is_m ? m : v).data() + p.offset, t.data, t.nbytes);
    ++found;
  }
  if (found != 2 * layout.size())
    fail(opt_path, ": ", found, " tensors, expected ", 2 * layout.size(), " (adamw_m.* and adamw_v.*)");
  optimizer.load_state(m, v, out.state.step);
  out.csv_log = read_text_file((fs::path(dir) / "train_log.csv").string());
  return out;
}

}  // namespace

LoadedCheckpoint read_training_checkpoint(const std::string& dir, const TrainModel<float>& model,
                                          AdamW<float>& optimizer) {
  return read_checkpoint_folder(dir, kCheckpointFormat, model.params().size(), model.layout(), optimizer);
}

LoadedCheckpoint read_training_checkpoint(const std::string& dir, LoraModel<float>& lora, AdamW<float>& optimizer) {
  LoadedCheckpoint out = read_checkpoint_folder(dir, kLoraCheckpointFormat, lora.params().size(), lora.layout(), optimizer);
  const std::string path = (fs::path(dir) / kLoraCheckpointWeights).string();
  const std::vector<Tensor> tensors = formats::read_safetensors(path);
  size_t found = 0;
  for (const Tensor& t : tensors) {
    const ParamInfo& p = lora.info(t.name);
    if (t.dtype != DType::F32 || t.nbytes != p.numel * sizeof(float))
      fail(path, ": tensor '", t.name, "' is not F32 with ", p.numel, " values");
    std::memcpy(lora.params().data() + p.offset, t.data, t.nbytes);
    ++found;
  }
  if (found != lora.layout().size())
    fail(path, ": ", found, " tensors, expected ", lora.layout().size(), " (lora_A and lora_B of every adapted module)");
  return out;
}

}  // namespace baichuan::train
