#include "train/step_file.h"

#include "core/error.h"
#include "core/json_file.h"
#include "formats/safetensors.h"

namespace baichuan::train {

namespace {

using nlohmann::json;

const json& field(const json& j, const char* key, const std::string& what) {
  if (!j.is_object() || !j.contains(key)) fail(what, ": missing field '", key, "'");
  return j[key];
}

double number(const json& j, const std::string& what) {
  if (!j.is_number()) fail(what, " must be a number, got ", j.dump());
  return j.get<double>();
}

std::vector<int32_t> ids(const json& j, const std::string& what) {
  if (!j.is_array()) fail(what, " must be an array of integers, got ", j.dump().substr(0, 80));
  std::vector<int32_t> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& v = j[i];
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      fail(what, "[", i, "] must be a 32-bit integer, got ", v.dump());
    out.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return out;
}

}  // namespace

StepFile read_step_file(const std::string& path) {
  const json j = read_json_file(path);
  StepFile step;
  const json& batch = field(j, "batch", path);
  if (!batch.is_array() || batch.empty()) fail(path, ": 'batch' must be a non-empty array of records");
  for (size_t r = 0; r < batch.size(); ++r) {
    const std::string what = cat(path, ": batch[", r, "]");
    step.batch.push_back({ids(field(batch[r], "input_ids", what), what + ".input_ids"),
                          ids(field(batch[r], "labels", what), what + ".labels")});
  }
  const json& adamw = field(j, "adamw", path);
  const std::string what = path + ": adamw";
  step.adamw.lr = number(field(adamw, "lr", what), what + ".lr");
  const json& betas = field(adamw, "betas", what);
  if (!betas.is_array() || betas.size() != 2) fail(what, ".betas must be [beta1, beta2], got ", betas.dump());
  step.adamw.beta1 = number(betas[0], what + ".betas[0]");
  step.adamw.beta2 = number(betas[1], what + ".betas[1]");
  step.adamw.eps = number(field(adamw, "eps", what), what + ".eps");
  step.adamw.weight_decay = number(field(adamw, "weight_decay", what), what + ".weight_decay");
  return step;
}

void write_step_dump(const std::string& path, TrainModel<float>& model) {
  std::vector<Tensor> tensors;
  append_flat_views(tensors, model.layout(), "grad.", model.grads().data());
  append_flat_views(tensors, model.layout(), "after_step.", model.params().data());
  formats::write_safetensors(path, tensors);
}

}  // namespace baichuan::train
