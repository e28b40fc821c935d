#include "train/data_order.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/splitmix64.h"

namespace baichuan::train {

namespace {

constexpr uint64_t kEvalSplitStream = 0xe7a15b117ULL;  // a stream no epoch uses

}  // namespace

std::vector<int64_t> shuffled(std::vector<int64_t> rows, uint64_t seed, uint64_t stream) {
  uint64_t state = seed ^ (stream * 0xd1b54a32d192ed03ULL);
  splitmix64(state);
  for (size_t i = rows.size(); i > 1; --i) {
    // Lemire's multiply-shift: an index in [0, i) from 64 random bits (bias below 2^-40 here).
    const auto j = static_cast<size_t>((static_cast<unsigned __int128>(splitmix64(state)) * i) >> 64);
    std::swap(rows[i - 1], rows[j]);
  }
  return rows;
}

RowSplit split_rows(int64_t n, double eval_fraction, uint64_t seed) {
  if (!(eval_fraction >= 0 && eval_fraction < 1)) fail("--eval-split ", eval_fraction, ": expected a fraction in [0, 1)");
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  const auto n_eval = static_cast<int64_t>(std::llround(static_cast<double>(n) * eval_fraction));
  if (eval_fraction > 0 && (n_eval < 1 || n_eval >= n))
    fail("--eval-split ", eval_fraction, " of ", n, " records leaves ", n_eval, " held-out and ", n - n_eval,
         " training records: both need at least one");
  const std::vector<int64_t> order = shuffled(all, seed, kEvalSplitStream);
  RowSplit split;
  split.eval.assign(order.begin(), order.begin() + n_eval);
  split.train.assign(order.begin() + n_eval, order.end());
  std::sort(split.eval.begin(), split.eval.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

std::vector<int64_t> rank_share(std::span<const int64_t> rows, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks) fail("rank ", rank, " of ", ranks, ": not a rank of the job");
  std::vector<int64_t> share;
  for (size_t i = static_cast<size_t>(rank); i < rows.size(); i += static_cast<size_t>(ranks)) share.push_back(rows[i]);
  return share;
}

DataCursor::DataCursor(std::vector<int64_t> rows, uint64_t seed, int64_t epoch, int64_t index)
    : rows_(std::move(rows)), seed_(seed), epoch_(epoch), index_(index) {
  if (rows_.empty()) fail("training: no training records");
  if (index_ < 0 || index_ >= static_cast<int64_t>(rows_.size()))
    fail("data position ", index_, " is outside the ", rows_.size(), " training records (a different dataset?)");
  order_ = shuffled(rows_, seed_, static_cast<uint64_t>(epoch_));
}

int64_t DataCursor::next() {
  const int64_t row = order_[static_cast<size_t>(index_)];
  if (++index_ == static_cast<int64_t>(order_.size())) {
    ++epoch_;
    index_ = 0;
    order_ = shuffled(rows_, seed_, static_cast<uint64_t>(epoch_));
  }
  return row;
}

}  // namespace baichuan::train
