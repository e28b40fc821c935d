#include "train/train_batch.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/ops.h"

namespace baichuan::train {

namespace {

constexpr int32_t kIgnoreIndex = -100;  // CrossEntropyLoss's ignore_index, the official label padding

}  // namespace

LossNorm count_loss_tokens(std::span<const Record> batch) {
  LossNorm n;
  for (const Record& r : batch) {
    const auto T = static_cast<int64_t>(r.labels.size());
    for (int64_t t = 1; t < T; ++t) n.ce_tokens += r.labels[static_cast<size_t>(t)] != kIgnoreIndex;
    n.z_rows += std::max<int64_t>(0, T - 1);
  }
  return n;
}

namespace {

// The positions of a batch that are computed: up to the last token or label of its longest record.
// The padding after it changes neither the loss nor a gradient: attention is causal, so no earlier
// position sees it, and its labels are -100; its outputs would be exact zeros in every sum. So it is
// cut, as a collator padding to the longest record does (the official script pads every record to
// seq_length). Not with z-loss: the official z-loss averages over every position, padding included.
int64_t computed_length(const TrainShape& s, std::span<const Record> batch) {
  const auto Tn = static_cast<int64_t>(batch[0].input_ids.size());
  if (s.z_loss_weight != 0) return Tn;
  int64_t length = 2;
  for (const Record& r : batch)
    for (auto t = static_cast<int64_t>(std::min(r.input_ids.size(), r.labels.size())) - 1; t >= length; --t)
      if (r.input_ids[static_cast<size_t>(t)] != s.pad_token_id || r.labels[static_cast<size_t>(t)] != kIgnoreIndex) {
        length = t + 1;
        break;
      }
  return std::min(length, Tn);
}

}  // namespace

template <typename T>
void prepare_batch(TrainContext<T>& a, const TrainShape& s, std::span<const Record> batch, bool head_gradient,
                   bool float_head) {
  if (batch.empty()) fail("training batch: no records");
  const auto B = static_cast<int64_t>(batch.size());
  const auto Tn = static_cast<int64_t>(batch[0].input_ids.size());
  if (Tn < 2) fail("training batch: record 0 has ", Tn, " tokens; a record needs at least 2");
  const int64_t Tc = computed_length(s, batch);
  a.ids.clear();
  a.key_mask.clear();
  a.head_rows.clear();
  for (int64_t b = 0; b < B; ++b) {
    const Record& r = batch[static_cast<size_t>(b)];
    if (static_cast<int64_t>(r.input_ids.size()) != Tn || static_cast<int64_t>(r.labels.size()) != Tn)
      fail("training batch: record ", b, " has ", r.input_ids.size(), " input_ids and ", r.labels.size(),
           " labels; every record of a batch must be padded to ", Tn, " (the length of record 0)");
    for (int64_t t = 0; t < Tn; ++t) {
      const int32_t id = r.input_ids[static_cast<size_t>(t)], label = r.labels[static_cast<size_t>(t)];
      if (id < 0 || id >= s.vocab)
        fail("training batch: record ", b, ": input_ids[", t, "] = ", id, " is outside the vocabulary of ", s.vocab);
      if (label != kIgnoreIndex && (label < 0 || label >= s.vocab))
        fail("training batch: record ", b, ": labels[", t, "] = ", label, " is neither -100 nor a token id below ",
             s.vocab);
      if (t >= Tc) continue;
      a.ids.push_back(id);
      a.key_mask.push_back(id != s.pad_token_id);
      // Row t predicts labels[t + 1]; with z-loss every row but the last is read.
      if (t + 1 < Tc) {
        const int32_t next = r.labels[static_cast<size_t>(t + 1)];
        if (next != kIgnoreIndex || s.z_loss_weight != 0)
          a.head_rows.push_back({b * Tc + t, next == kIgnoreIndex ? -1 : next});
      }
    }
  }
  if (a.batch != B || a.seq_len != Tc) {
    a.batch = B;
    a.seq_len = Tc;
    if (s.position == PositionEncoding::Rope) a.rope = rope_table<T>(Tc, s.head_dim(), s.rope_theta);
    if (s.position == PositionEncoding::Alibi) {
      const std::vector<float> slopes = kernels::alibi_slopes(s.heads, s.max_alibi_bias);
      a.alibi_slopes.assign(slopes.begin(), slopes.end());
    }
  }
  const auto N = static_cast<size_t>(B * Tn), H = static_cast<size_t>(s.hidden), F = static_cast<size_t>(s.ffn),
             L = static_cast<size_t>(s.layers), V = static_cast<size_t>(s.vocab), nh = static_cast<size_t>(s.heads);
  grow_buffer(a.x, (L + 1) * N * H);
  const size_t kept = a.checkpoint_activations ? 1 : L;  // layers whose activations are kept
  for (auto* v : {&a.ln1, &a.att, &a.x_mid, &a.ln2}) grow_buffer(*v, kept * N * H);
  for (auto* v : {&a.rstd1, &a.rstd2}) grow_buffer(*v, kept * N);
  grow_buffer(a.qkv, kept * N * 3 * H);
  grow_buffer(a.lse, kept * nh * N);
  for (auto* v : {&a.gate, &a.up, &a.act}) grow_buffer(*v, kept * N * F);
  grow_buffer(a.lnf, N * H);
  grow_buffer(a.rstdf, N);
  if (float_head) {
    grow_buffer(a.head, V * H);
    grow_buffer(a.head_norm, V);
  }
  if (head_gradient) grow_buffer(a.dhead, V * H);
  grow_buffer(a.logits, static_cast<size_t>(kHeadChunkRows) * V);
  for (auto* v : {&a.head_in, &a.dhead_in}) grow_buffer(*v, static_cast<size_t>(kHeadChunkRows) * H);
  grow_buffer(a.head_targets, static_cast<size_t>(kHeadChunkRows));
  for (auto* v : {&a.ce, &a.z}) grow_buffer(*v, a.head_rows.size());
  for (auto* v : {&a.tmp, &a.dx, &a.dln, &a.datt, &a.dlnf}) grow_buffer(*v, N * H);
  grow_buffer(a.dqkv, N * 3 * H);
  for (auto* v : {&a.dact, &a.dgate, &a.dup}) grow_buffer(*v, N * F);
}

template void prepare_batch<float>(TrainContext<float>&, const TrainShape&, std::span<const Record>, bool, bool);
template void prepare_batch<double>(TrainContext<double>&, const TrainShape&, std::span<const Record>, bool, bool);

}  // namespace baichuan::train
