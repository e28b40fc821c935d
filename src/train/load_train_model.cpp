// Loading a TrainModel from a checkpoint: the weights to float in the official row order, or a frozen
// base that keeps its quantized matrices in their stored types (QLoRA).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/vec.h"
#include "train/frozen_linear.h"
#include "train/train_model.h"

namespace baichuan::train {

namespace {

// The stored row of row r of a layer matrix in the official layout. GGUF keeps Q and K rows of each
// head in interleaved-pair order: rows (i, i + d/2) of the official layout sit at rows (2i, 2i + 1).
int64_t official_to_stored_row(const Checkpoint& c, const TrainShape& s, const std::string& role, int64_t r) {
  if (!c.qk_interleaved || (role != "attn_q" && role != "attn_k")) return r;
  const int64_t d = s.head_dim(), head = r / d, within = r % d, half = d / 2;
  return head * d + (within < half ? 2 * within : 2 * (within - half) + 1);
}

// Copies every checkpoint tensor whose destination in `model` is not null (the layer matrices of a
// stored base are) to float, in the official row order; with `release`, lets go of the file's pages.
template <typename T>
void copy_float_weights(TrainModel<T>& model, const Checkpoint& c, bool release) {
  const TrainShape& s = model.shape();
  Weights<T> w = model.weights();
  std::vector<float> row;
  auto copy = [&](const std::string& role, const std::string& canonical, T* dst) {
    if (!dst) return;
    const Tensor& t = c.tensor(canonical);
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
    const size_t row_bytes = bytes_for(t.dtype, cols, t.name);
    row.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      const auto stored = static_cast<size_t>(official_to_stored_row(c, s, role, r));
      kernels::row_to_f32(t.dtype, t.data + stored * row_bytes, row.data(), cols);
      std::copy(row.begin(), row.end(), dst + r * cols);
    }
    if (release) MappedFile::release_pages(t.data, t.nbytes);
  };
  copy("", "token_embd.weight", w.embed);
  const int64_t HH = s.hidden * s.hidden;
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto& L = w.layers[static_cast<size_t>(l)];
    auto layer = [&](const std::string& role, T* dst) { copy(role, layer_tensor(l, role), dst); };
    layer("attn_q", L.w_pack);
    layer("attn_k", L.w_pack ? L.w_pack + HH : nullptr);
    layer("attn_v", L.w_pack ? L.w_pack + 2 * HH : nullptr);
    layer("attn_output", L.o_proj);
    layer("ffn_gate", L.gate);
    layer("ffn_up", L.up);
    layer("ffn_down", L.down);
    layer("attn_norm", L.attn_norm);
    layer("ffn_norm", L.ffn_norm);
  }
  copy("", "output_norm.weight", w.final_norm);
  copy("", "output.weight", w.lm_head);
}

// The row blocks of every matrix a frozen base may keep stored: {canonical name, role} per block.
std::vector<std::vector<std::pair<std::string, std::string>>> layer_matrix_sources(const TrainShape& s) {
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  for (int64_t l = 0; l < s.layers; ++l)
    for (LoraTarget t : kLoraTargets) {
      auto& blocks = out.emplace_back();
      for (const std::string& role : lora_gguf_roles(t)) blocks.emplace_back(layer_tensor(l, role), role);
    }
  return out;
}

// Whether a frozen base keeps anything in a stored type: it does when a layer matrix, the embedding
// or the head is in a type with an integer dot product.
bool has_stored_matrices(const Checkpoint& c, const TrainShape& s) {
  for (const auto& blocks : layer_matrix_sources(s))
    for (const auto& [name, role] : blocks)
      if (keeps_stored_type(c.tensor(name).dtype)) return true;
  return keeps_stored_type(c.tensor("token_embd.weight").dtype) || keeps_stored_type(c.tensor("output.weight").dtype);
}

// The type a stored base keeps a layer matrix in: its own, or F32.
DType stored_base_type(DType type) { return keeps_stored_type(type) ? type : DType::F32; }

}  // namespace

template <typename T>
TrainModel<T> load_train_model(const Checkpoint& c, bool with_gradients) {
  validate_tensors(c);
  TrainModel<T> model(TrainShape::from(c.config), with_gradients);
  copy_float_weights(model, c, /*release=*/false);
  return model;
}

TrainModel<float> load_frozen_base(const Checkpoint& c) {
  validate_tensors(c);
  const TrainShape s = TrainShape::from(c.config);
  if (!has_stored_matrices(c, s)) return load_train_model<float>(c, /*with_gradients=*/false);
  const bool embed_stored = keeps_stored_type(c.tensor("token_embd.weight").dtype),
             head_stored = keeps_stored_type(c.tensor("output.weight").dtype);
  auto sources = layer_matrix_sources(s);
  using Block = std::pair<std::string, std::string>;
  if (embed_stored) sources.push_back({Block{"token_embd.weight", ""}});
  if (head_stored) sources.push_back({Block{"output.weight", ""}});
  // Sizes first, then one buffer holding every matrix's rows in the official order.
  size_t total = 0;
  for (const auto& blocks : sources)
    for (const auto& [name, role] : blocks) {
      const Tensor& src = c.tensor(name);
      total += static_cast<size_t>(src.shape[0]) * bytes_for(stored_base_type(src.dtype), src.shape[1], src.name);
    }
  HugeBuffer bytes(total);
  std::vector<StoredMatrix> matrices;
  std::byte* dst = bytes.data();
  std::vector<float> row;
  for (const auto& blocks : sources) {
    StoredMatrix m;
    for (const auto& [name, role] : blocks) {
      const Tensor& src = c.tensor(name);
      kernels::WeightMatrix part;
      part.dtype = stored_base_type(src.dtype);
      part.data = dst;
      part.rows = src.shape[0];
      part.cols = src.shape[1];
      part.row_bytes = bytes_for(part.dtype, part.cols, src.name);
      const size_t src_row_bytes = bytes_for(src.dtype, part.cols, src.name);
      row.resize(static_cast<size_t>(part.cols));
      for (int64_t r = 0; r < part.rows; ++r) {
        const std::byte* from = src.data + static_cast<size_t>(official_to_stored_row(c, s, role, r)) * src_row_bytes;
        if (part.dtype == src.dtype) {
          std::copy_n(from, part.row_bytes, dst + static_cast<size_t>(r) * part.row_bytes);
        } else {
          kernels::row_to_f32(src.dtype, from, row.data(), part.cols);
          std::copy_n(reinterpret_cast<const std::byte*>(row.data()), part.row_bytes,
                      dst + static_cast<size_t>(r) * part.row_bytes);
        }
      }
      MappedFile::release_pages(src.data, src.nbytes);
      dst += static_cast<size_t>(part.rows) * part.row_bytes;
      m.in = part.cols;
      m.out += part.rows;
      m.parts.push_back(part);
    }
    matrices.push_back(std::move(m));
  }
  std::optional<StoredMatrix> head, embed;
  if (head_stored) {
    head = std::move(matrices.back());
    matrices.pop_back();
  }
  if (embed_stored) {
    embed = std::move(matrices.back());
    matrices.pop_back();
  }
  auto stored = std::make_shared<StoredWeights>(std::move(bytes), std::move(matrices), s.layers);
  stored->embed = std::move(embed);
  if (head) {  // F.normalize's norms of the stored rows, for the NormHead
    const kernels::WeightMatrix& w = head->parts[0];
    stored->head_inv_norm.resize(static_cast<size_t>(w.rows));
    for (int64_t r = 0; r < w.rows; ++r) {
      kernels::row_to_f32(w.dtype, w.row(r), row.data(), w.cols);
      double sum_sq = 0;
      for (float v : row) sum_sq += static_cast<double>(v) * v;
      stored->head_inv_norm[static_cast<size_t>(r)] = static_cast<float>(1.0 / std::max(std::sqrt(sum_sq), 1e-12));
    }
    stored->head = std::move(head);
  }
  ThreadPool pool(1);  // a memory copy: one thread keeps up
  stored->pack(pool);
  TrainModel<float> model(s, std::shared_ptr<const StoredWeights>(std::move(stored)));
  copy_float_weights(model, c, /*release=*/true);
  return model;
}

FrozenBaseSize frozen_base_size(const Checkpoint& c) {
  const TrainShape s = TrainShape::from(c.config);
  uint64_t floats = 0;
  for (const ParamInfo& p : param_layout(s)) floats += p.numel;
  if (!has_stored_matrices(c, s)) return {floats * sizeof(float), "", false};
  FrozenBaseSize size;
  std::vector<DType> seen;
  auto add = [&](const Tensor& src) {
    const DType type = stored_base_type(src.dtype);
    floats -= static_cast<uint64_t>(src.shape[0] * src.shape[1]);
    size.bytes += static_cast<uint64_t>(src.shape[0]) * bytes_for(type, src.shape[1], src.name);
    if (type != DType::F32 && std::find(seen.begin(), seen.end(), type) == seen.end()) seen.push_back(type);
  };
  for (const auto& blocks : layer_matrix_sources(s))
    for (const auto& [name, role] : blocks) add(c.tensor(name));
  if (keeps_stored_type(c.tensor("token_embd.weight").dtype)) add(c.tensor("token_embd.weight"));
  if (keeps_stored_type(c.tensor("output.weight").dtype)) {
    add(c.tensor("output.weight"));
    size.bytes += static_cast<uint64_t>(s.vocab) * sizeof(float);  // head_inv_norm
    size.stored_head = true;
  }
  size.bytes += floats * sizeof(float);
  for (DType t : seen) size.stored_types += (size.stored_types.empty() ? "" : ", ") + std::string(dtype_info(t).name);
  return size;
}

template TrainModel<float> load_train_model<float>(const Checkpoint&, bool);
template TrainModel<double> load_train_model<double>(const Checkpoint&, bool);

}  // namespace baichuan::train
