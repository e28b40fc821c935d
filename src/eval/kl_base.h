// The full next-token distributions of a reference run (e.g. the F16 model), saved by
// `baichuan perplexity --kl-base FILE` and compared against a later run (e.g. a quantized model):
// KL(base || this) per scored token, and how often both put the same token first.
//
// File layout (little-endian), written under a temporary name and renamed into place:
//   "BCKLBASE", u32 version = 1, u32 value type = 1 (f16),
//   i64 vocab, ctx, stride, n_ids, n_scored, i32 ids[n_ids], zero padding to a multiple of 64,
//   f16 log_probs[n_scored][vocab], f64 nll_sum, "BCKLDONE".
// Size: about n_scored x vocab x 2 bytes (Baichuan 2: 0.25 MB per scored token).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "eval/perplexity.h"

namespace baichuan::eval {

// What must match between the base and a run compared against it.
struct KlBaseHeader {
  int64_t vocab = 0, ctx = 0, stride = 0, scored = 0;
  std::vector<int32_t> ids;
};

class KlBaseWriter {
 public:
  KlBaseWriter(const std::string& path, const KlBaseHeader& header);
  void add(const ScoredToken& token);  // in text order
  void commit(double nll_sum);         // throws unless every scored token was added
  size_t bytes() const { return file_.written(); }

 private:
  std::string path_;
  AtomicFile file_;
  int64_t vocab_, expected_, added_ = 0;
  std::vector<uint16_t> row_;
};

struct KlComparison {
  int64_t tokens = 0, top1_same = 0;
  double kl_sum = 0, kl_max = 0;
  double base_nll_sum = 0;
  double kl_mean() const { return tokens ? kl_sum / static_cast<double>(tokens) : 0; }
  double top1_agreement() const { return tokens ? static_cast<double>(top1_same) / static_cast<double>(tokens) : 0; }
  double base_perplexity() const;
};

class KlBaseComparer {
 public:
  // Throws Error naming the file and the field when the base does not fit this run.
  KlBaseComparer(const std::string& path, const KlBaseHeader& expected);
  void add(const ScoredToken& token);  // in text order
  const KlComparison& result() const { return result_; }

 private:
  std::shared_ptr<MappedFile> file_;
  const std::byte* rows_ = nullptr;
  int64_t vocab_;
  KlComparison result_;
  std::vector<float> base_, ours_;
};

}  // namespace baichuan::eval
