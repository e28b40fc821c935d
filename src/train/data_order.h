// Which dataset rows a run trains on and in what order. Epoch e visits the training rows in a
// Fisher-Yates shuffle drawn from splitmix64 seeded with (seed, e): a pure function of the two, the
// same on every platform (std::shuffle and std::uniform_int_distribution are not), so a checkpoint
// needs only (seed, epoch, index) to resume the stream exactly. Rows are read as one stream across
// epochs: a step whose rows run past the end of an epoch takes the rest from the next epoch's order.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace baichuan::train {

// A permutation of `rows` drawn from (seed, stream).
std::vector<int64_t> shuffled(std::vector<int64_t> rows, uint64_t seed, uint64_t stream);

// The held-out split of n rows: round(n * fraction) rows chosen by a seeded shuffle (independent of
// the epochs' shuffles), the rest for training, both in ascending row order. fraction in [0, 1).
struct RowSplit {
  std::vector<int64_t> train, eval;
};
RowSplit split_rows(int64_t n, double eval_fraction, uint64_t seed);

// Rank `rank` of `ranks`' share of `rows`, as MindFormers shards data parallel: rows[rank],
// rows[rank + ranks], ... Every rank reads a step's rows for all ranks from the same seeded order and
// keeps its share, so the data position is one number for the whole job (checkpoints, --resume).
std::vector<int64_t> rank_share(std::span<const int64_t> rows, int rank, int ranks);

class DataCursor {
 public:
  DataCursor(std::vector<int64_t> rows, uint64_t seed, int64_t epoch = 0, int64_t index = 0);
  int64_t next();  // the next row, moving to the next epoch's order after the last one
  int64_t epoch() const { return epoch_; }
  int64_t index() const { return index_; }

 private:
  std::vector<int64_t> rows_, order_;
  uint64_t seed_;
  int64_t epoch_, index_;
};

}  // namespace baichuan::train
