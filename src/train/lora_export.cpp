#include "train/lora_export.h"

#include <filesystem>

namespace baichuan::train {

LoraAdapter to_lora_adapter(const LoraModel<float>& lora, const std::string& base_model) {
  const LoraSpec& spec = lora.spec();
  LoraAdapter adapter;
  adapter.config.r = spec.rank;
  adapter.config.lora_alpha = spec.alpha;
  adapter.config.lora_dropout = spec.dropout;
  adapter.config.use_rslora = spec.rslora;
  for (LoraTarget t : spec.targets) adapter.config.target_modules.emplace_back(lora_target_name(t));
  adapter.config.base_model_name_or_path = base_model;
  adapter.num_layers = lora.base().shape().layers;
  const auto params = lora.params();
  for (const LoraSlot& slot : lora.slots()) {
    LoraModule m;
    m.layer = slot.layer;
    m.target = slot.target;
    m.rank = spec.rank;
    m.alpha = spec.alpha;
    m.scale = lora_scale(spec.alpha, spec.rank, spec.rslora);
    m.a.assign(params.begin() + static_cast<ptrdiff_t>(slot.a),
               params.begin() + static_cast<ptrdiff_t>(slot.a + static_cast<size_t>(spec.rank * slot.in)));
    m.b.assign(params.begin() + static_cast<ptrdiff_t>(slot.b),
               params.begin() + static_cast<ptrdiff_t>(slot.b + static_cast<size_t>(slot.out * spec.rank)));
    adapter.modules.push_back(std::move(m));
  }
  return adapter;  // slots are in (layer, target) order already, as LoraAdapter::modules must be
}

LoraOutputPaths write_lora_outputs(const std::string& out_dir, const LoraModel<float>& lora, const ModelConfig& config,
                                   const std::string& base_model) {
  const LoraAdapter adapter = to_lora_adapter(lora, base_model);
  validate_lora_adapter(adapter, config);
  LoraOutputPaths paths{(std::filesystem::path(out_dir) / "adapter").string(),
                        (std::filesystem::path(out_dir) / "adapter.gguf").string()};
  write_peft_adapter(paths.peft_dir, adapter);
  write_gguf_lora_adapter(paths.gguf, adapter, config);
  return paths;
}

}  // namespace baichuan::train
