#include "train/lora.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/splitmix64.h"
#include "train/ops.h"

namespace baichuan::train {

namespace {

LoraTarget lora_spec_target(const std::string& name) {
  if (const auto t = parse_lora_target(name)) return *t;
  fail("--lora: unknown target '", name, "' (targets: W_pack, o_proj, gate_proj, up_proj, down_proj)");
}

double parse_lora_number(const std::string& key, const std::string& value) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size() || !std::isfinite(v)) fail("--lora: ", key, "=", value, " is not a number");
  return v;
}

// A uniform double in [0, 1) from 53 random bits.
double unit_interval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace

int64_t lora_target_in(const TrainShape& s, LoraTarget t) { return t == LoraTarget::DownProj ? s.ffn : s.hidden; }

int64_t lora_target_out(const TrainShape& s, LoraTarget t) {
  if (t == LoraTarget::WPack) return 3 * s.hidden;
  return t == LoraTarget::GateProj || t == LoraTarget::UpProj ? s.ffn : s.hidden;
}

double LoraSpec::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

bool LoraSpec::targets_module(LoraTarget t) const { return std::find(targets.begin(), targets.end(), t) != targets.end(); }

LoraSpec LoraSpec::parse(const std::string& text) {
  LoraSpec spec;
  if (text.empty()) return spec;
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  if (!text.empty() && text.back() == ',') items.emplace_back();
  bool in_targets = false, targets_given = false;
  for (const std::string& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      if (!in_targets)
        fail("--lora: '", item, "' is not key=value (keys: r, alpha, dropout, targets, rslora; e.g. r=8,alpha=16)");
      if (item.empty()) fail("--lora: empty target name in '", text, "'");
      const LoraTarget t = lora_spec_target(item);
      if (spec.targets_module(t)) fail("--lora: target '", item, "' is given twice");
      spec.targets.push_back(t);
      continue;
    }
    in_targets = false;
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "r") {
      const double r = parse_lora_number(key, value);
      if (r < 1 || r != std::floor(r) || r > 65536) fail("--lora: r=", value, " must be a whole number >= 1");
      spec.rank = static_cast<int64_t>(r);
    } else if (key == "alpha") {
      spec.alpha = parse_lora_number(key, value);
      if (spec.alpha <= 0) fail("--lora: alpha=", value, " must be positive");
    } else if (key == "dropout") {
      spec.dropout = parse_lora_number(key, value);
      if (spec.dropout < 0 || spec.dropout >= 1) fail("--lora: dropout=", value, " must be in [0, 1)");
    } else if (key == "rslora") {
      if (value == "1" || value == "true") spec.rslora = true;
      else if (value == "0" || value == "false") spec.rslora = false;
      else fail("--lora: rslora=", value, " must be 1 or 0");
    } else if (key == "targets") {
      if (targets_given) fail("--lora: targets= is given twice");
      targets_given = in_targets = true;
      spec.targets.clear();
      if (value.empty()) fail("--lora: targets= needs at least one of W_pack, o_proj, gate_proj, up_proj, down_proj");
      spec.targets.push_back(lora_spec_target(value));
    } else {
      fail("--lora: unknown key '", key, "' (keys: r, alpha, dropout, targets, rslora)");
    }
  }
  return spec;
}

nlohmann::ordered_json LoraSpec::to_json() const {
  nlohmann::ordered_json j;
  j["r"] = rank;
  j["alpha"] = alpha;
  j["dropout"] = dropout;
  j["rslora"] = rslora;
  j["targets"] = nlohmann::json::array();
  for (LoraTarget t : targets) j["targets"].push_back(lora_target_name(t));
  return j;
}

LoraSpec LoraSpec::from_json(const nlohmann::json& j, const std::string& what) {
  LoraSpec s;
  try {
    s.rank = j.at("r").get<int64_t>();
    s.alpha = j.at("alpha").get<double>();
    s.dropout = j.at("dropout").get<double>();
    s.rslora = j.at("rslora").get<bool>();
    s.targets.clear();
    for (const auto& t : j.at("targets")) s.targets.push_back(lora_spec_target(t.get<std::string>()));
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": lora: ", e.what());
  }
  if (s.rank < 1 || !(s.alpha > 0) || !(s.dropout >= 0 && s.dropout < 1) || s.targets.empty())
    fail(what, ": lora: invalid settings ", j.dump());
  return s;
}

std::string LoraSpec::describe() const {
  std::string names;
  for (LoraTarget t : targets) {
    if (!names.empty()) names.push_back(',');
    names.append(lora_target_name(t));
  }
  return cat("r ", rank, ", alpha ", alpha, rslora ? " (rsLoRA" : " (", rslora ? ", scale " : "scale ", scale(),
             "), dropout ", dropout, ", targets ", names);
}

template <typename T>
LoraModel<T>::LoraModel(TrainModel<T>& base, const LoraSpec& spec, uint64_t seed)
    : base_(&base), spec_(spec), seed_(seed) {
  if (spec.rank < 1 || spec.targets.empty()) fail("LoRA: rank must be >= 1 and at least one target given");
  const TrainShape& s = base.shape();
  const int64_t r = spec.rank;
  size_t offset = 0;
  for (int64_t l = 0; l < s.layers; ++l)
    for (LoraTarget t : kLoraTargets) {
      if (!spec.targets_module(t)) continue;
      LoraSlot slot;
      slot.layer = l;
      slot.target = t;
      slot.in = lora_target_in(s, t);
      slot.out = lora_target_out(s, t);
      const std::string prefix = "base_model.model." + lora_module_path(l, t);
      slot.a = offset;
      layout_.push_back({prefix + ".lora_A.weight", {r, slot.in}, offset, static_cast<size_t>(r * slot.in)});
      offset += layout_.back().numel;
      slot.b = offset;
      layout_.push_back({prefix + ".lora_B.weight", {slot.out, r}, offset, static_cast<size_t>(slot.out * r)});
      offset += layout_.back().numel;
      slot.rank_cols = rank_cols_;
      rank_cols_ += static_cast<size_t>(r);
      max_in_ = std::max(max_in_, slot.in);
      max_out_ = std::max(max_out_, slot.out);
      slots_.push_back(slot);
    }
  params_.assign(offset, T(0));
  grads_.assign(offset, T(0));
}

template <typename T>
void LoraModel<T>::init() {
  uint64_t state = seed_ ^ 0x4c6f5241ULL;  // "LoRA": a stream apart from the data order's
  for (const LoraSlot& slot : slots_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(slot.in));
    T* a = params_.data() + slot.a;
    for (int64_t i = 0; i < spec_.rank * slot.in; ++i)
      a[i] = static_cast<T>((2 * unit_interval(splitmix64(state)) - 1) * bound);
    std::fill_n(params_.data() + slot.b, slot.out * spec_.rank, T(0));
  }
}

template <typename T>
const LoraSlot* LoraModel<T>::slot(int64_t layer, LoraTarget t) const {
  for (const LoraSlot& s : slots_)
    if (s.layer == layer && s.target == t) return &s;
  return nullptr;
}

template <typename T>
const ParamInfo& LoraModel<T>::info(const std::string& name) const {
  if (const ParamInfo* p = this->find(name)) return *p;
  fail("LoRA adapter: no tensor named '", name, "' (", spec_.describe(), ")");
}

template <typename T>
void LoraModel<T>::set_dropout_pass(int64_t step, int64_t micro_batch) {
  uint64_t state = seed_;
  uint64_t key = splitmix64(state);
  state = key ^ static_cast<uint64_t>(step);
  key = splitmix64(state);
  state = key ^ static_cast<uint64_t>(micro_batch);
  dropout_key_ = splitmix64(state);
  dropout_on_ = true;
}

template <typename T>
bool LoraModel<T>::dropout_keeps(const LoraSlot& slot, uint64_t i) const {
  uint64_t state = dropout_key_ ^ (static_cast<uint64_t>(slot.layer * 8 + static_cast<int>(slot.target)) << 44) ^ i;
  return unit_interval(splitmix64(state)) >= spec_.dropout;
}

namespace {

// xd = dropout(in) for `slot` in the current pass: torch's dropout, kept elements scaled by 1 / (1 - p).
// A pure function of the pass, the slot and the element, so the backward recomputes it from the
// layer's input rather than keeping every adapter's dropped-out input from the forward.
template <typename T>
void lora_dropout_input(const LoraModel<T>& lora, const LoraSlot& s, const T* in, T* xd, int64_t N, ThreadPool& pool) {
  const T keep_scale = static_cast<T>(1.0 / (1.0 - lora.spec().dropout));
  pool.parallel_for(N, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin * s.in; i < end * s.in; ++i)
      xd[i] = lora.dropout_keeps(s, static_cast<uint64_t>(i)) ? in[i] * keep_scale : T(0);
  }, 16);
}

}  // namespace

template <typename T>
void lora_prepare(const LoraModel<T>& lora, TrainContext<T>& a, int64_t N) {
  const auto n = static_cast<size_t>(N);
  if (lora.dropout_active()) grow_buffer(a.lora_input, n * static_cast<size_t>(lora.max_in()));
  grow_buffer(a.lora_mid, n * lora.rank_cols());
  grow_buffer(a.lora_scratch, n * static_cast<size_t>(lora.max_out()));
  grow_buffer(a.lora_dmid, n * static_cast<size_t>(lora.spec().rank));
  if (lora.spec().dropout > 0) grow_buffer(a.lora_dinput, n * static_cast<size_t>(lora.max_in()));
}

template <typename T>
void lora_forward(const LoraModel<T>& lora, const LoraSlot& s, T* out, const T* in, TrainContext<T>& a, int64_t N,
                  ThreadPool& pool) {
  const int64_t r = lora.spec().rank;
  const T* x = in;
  if (lora.dropout_active()) {
    lora_dropout_input(lora, s, in, a.lora_input.data(), N, pool);
    x = a.lora_input.data();
  }
  T* u = a.lora_mid.data() + s.rank_cols * static_cast<size_t>(N);
  matmul_forward(u, x, lora.params().data() + s.a, N, s.in, r, pool);
  T* bu = a.lora_scratch.data();
  matmul_forward(bu, u, lora.params().data() + s.b, N, r, s.out, pool);
  const T scale = lora.scale();
  pool.parallel_for(N * s.out, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) out[i] += scale * bu[i];
  }, 4096);
}

template <typename T>
void lora_backward(LoraModel<T>& lora, const LoraSlot& s, T* din, const T* dout, const T* in, TrainContext<T>& a,
                   int64_t N, ThreadPool& pool) {
  const int64_t r = lora.spec().rank;
  const T scale = lora.scale();
  T* sd = a.lora_scratch.data();  // scale * dout: the gradient at B's output
  pool.parallel_for(N * s.out, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) sd[i] = scale * dout[i];
  }, 4096);
  const T* u = a.lora_mid.data() + s.rank_cols * static_cast<size_t>(N);
  T* du = a.lora_dmid.data();
  std::fill_n(du, N * r, T(0));
  matmul_backward(du, lora.grads().data() + s.b, sd, u, lora.params().data() + s.b, N, r, s.out, pool);
  if (!lora.dropout_active()) {
    matmul_backward(din, lora.grads().data() + s.a, du, in, lora.params().data() + s.a, N, s.in, r, pool);
    return;
  }
  T* xd = a.lora_input.data();  // the forward's dropped-out input, recomputed bit for bit
  lora_dropout_input(lora, s, in, xd, N, pool);
  T* dxd = a.lora_dinput.data();
  std::fill_n(dxd, N * s.in, T(0));
  matmul_backward(dxd, lora.grads().data() + s.a, du, xd, lora.params().data() + s.a, N, s.in, r, pool);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - lora.spec().dropout));
  pool.parallel_for(N, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin * s.in; i < end * s.in; ++i)
      if (lora.dropout_keeps(s, static_cast<uint64_t>(i))) din[i] += dxd[i] * keep_scale;
  }, 16);
}

#define BAICHUAN_LORA(T)                                                                                            \
  template class LoraModel<T>;                                                                                     \
  template void lora_prepare<T>(const LoraModel<T>&, TrainContext<T>&, int64_t);                                    \
  template void lora_forward<T>(const LoraModel<T>&, const LoraSlot&, T*, const T*, TrainContext<T>&, int64_t,     \
                                ThreadPool&);                                                                      \
  template void lora_backward<T>(LoraModel<T>&, const LoraSlot&, T*, const T*, const T*, TrainContext<T>&, int64_t, \
                                 ThreadPool&);

BAICHUAN_LORA(float)
BAICHUAN_LORA(double)

}  // namespace baichuan::train
