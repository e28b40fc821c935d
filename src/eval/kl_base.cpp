#include "eval/kl_base.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace baichuan::eval {

namespace {

constexpr char kMagic[8] = {'B', 'C', 'K', 'L', 'B', 'A', 'S', 'E'};
constexpr char kEndMagic[8] = {'B', 'C', 'K', 'L', 'D', 'O', 'N', 'E'};
constexpr uint32_t kVersion = 1, kValueF16 = 1;
constexpr size_t kFixedHeader = 8 + 4 + 4 + 5 * 8, kAlign = 64, kFooter = 8 + 8;

size_t rows_offset(size_t n_ids) { return (kFixedHeader + n_ids * 4 + kAlign - 1) / kAlign * kAlign; }

const float* f16_table() {  // every half value as float: the comparison converts 2 x vocab per token
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = f16_to_f32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

// Both sides are compared at the stored precision, renormalised, so a model compared with itself
// gives KL 0 and 100% agreement rather than rounding noise.
void renormalise(std::vector<float>& log_probs) {
  const double lse = log_sum_exp(log_probs);
  for (float& x : log_probs) x = static_cast<float>(x - lse);
}

size_t argmax(const std::vector<float>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

double KlComparison::base_perplexity() const {
  return tokens ? std::exp(base_nll_sum / static_cast<double>(tokens)) : 0;
}

KlBaseWriter::KlBaseWriter(const std::string& path, const KlBaseHeader& header)
    : path_(path),
      file_(path),
      vocab_(header.vocab),
      expected_(header.scored),
      row_(static_cast<size_t>(header.vocab)) {
  file_.write(kMagic, 8);
  file_.write(&kVersion, 4);
  file_.write(&kValueF16, 4);
  const int64_t fields[5] = {header.vocab, header.ctx, header.stride, static_cast<int64_t>(header.ids.size()),
                             header.scored};
  file_.write(fields, sizeof fields);
  file_.write(header.ids.data(), header.ids.size() * 4);
  file_.pad_to(kAlign);
}

void KlBaseWriter::add(const ScoredToken& token) {
  if (static_cast<int64_t>(token.logits.size()) != vocab_)
    fail(path_, ": a row of ", token.logits.size(), " logits, expected ", vocab_);
  for (int64_t v = 0; v < vocab_; ++v) row_[v] = f32_to_f16(static_cast<float>(token.logits[v] - token.log_sum_exp));
  file_.write(row_.data(), row_.size() * 2);
  ++added_;
}

void KlBaseWriter::commit(double nll_sum) {
  if (added_ != expected_) fail(path_, ": ", added_, " distributions written, expected ", expected_);
  file_.write(&nll_sum, 8);
  file_.write(kEndMagic, 8);
  file_.commit();
}

KlBaseComparer::KlBaseComparer(const std::string& path, const KlBaseHeader& expected)
    : file_(MappedFile::open(path)), vocab_(expected.vocab), base_(expected.vocab), ours_(expected.vocab) {
  const std::byte* p = file_->data();
  const size_t size = file_->size();
  if (size < kFixedHeader || std::memcmp(p, kMagic, 8) != 0)
    fail(path, ": not a --kl-base file of `baichuan perplexity` (no BCKLBASE header)");
  uint32_t version, value_type;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&value_type, p + 12, 4);
  if (version != kVersion)
    fail(path, ": version ", version, " of the --kl-base format; this build reads version ", kVersion);
  if (value_type != kValueF16) fail(path, ": value type ", value_type, " is not known (1 = f16)");
  int64_t f[5];
  std::memcpy(f, p + 16, sizeof f);
  const int64_t vocab = f[0], ctx = f[1], stride = f[2], n_ids = f[3], scored = f[4];
  if (vocab != expected.vocab) fail(path, ": vocab size: the base has ", vocab, ", this model has ", expected.vocab);
  if (ctx != expected.ctx)
    fail(path, ": ctx: the base was computed with --ctx ", ctx, ", this run uses ", expected.ctx);
  if (stride != expected.stride)
    fail(path, ": stride: the base was computed with --stride ", stride, ", this run uses ", expected.stride);
  if (n_ids != static_cast<int64_t>(expected.ids.size()))
    fail(path, ": token ids: the base has ", n_ids, " tokens, this text has ", expected.ids.size(),
         " (a different text file or tokenizer?)");
  if (size < rows_offset(static_cast<size_t>(n_ids)))
    fail(path, ": truncated: ", size, " bytes cannot hold the header of ", n_ids, " token ids");
  for (int64_t i = 0; i < n_ids; ++i) {
    int32_t id;
    std::memcpy(&id, p + kFixedHeader + i * 4, 4);
    if (id != expected.ids[i])
      fail(path, ": token ids differ at position ", i, " (base ", id, ", this text ", expected.ids[i],
           "): a different text file or tokenizer");
  }
  if (scored != expected.scored) fail(path, ": scored tokens: the base has ", scored, ", this run ", expected.scored);
  const size_t want = rows_offset(static_cast<size_t>(n_ids)) + static_cast<size_t>(scored * vocab) * 2 + kFooter;
  if (size != want) fail(path, ": size is ", size, " bytes, expected ", want, " (truncated or corrupt)");
  if (std::memcmp(p + size - 8, kEndMagic, 8) != 0) fail(path, ": no BCKLDONE footer (truncated or corrupt)");
  std::memcpy(&result_.base_nll_sum, p + size - kFooter, 8);
  rows_ = p + rows_offset(static_cast<size_t>(n_ids));
}

void KlBaseComparer::add(const ScoredToken& token) {
  const float* table = f16_table();
  const std::byte* row = rows_ + static_cast<size_t>(token.index * vocab_) * 2;
  for (int64_t v = 0; v < vocab_; ++v) {
    uint16_t h;
    std::memcpy(&h, row + v * 2, 2);
    base_[v] = table[h];
    ours_[v] = table[f32_to_f16(static_cast<float>(token.logits[v] - token.log_sum_exp))];
  }
  renormalise(base_);
  renormalise(ours_);
  double kl = 0;
  for (int64_t v = 0; v < vocab_; ++v)
    kl += std::exp(static_cast<double>(base_[v])) * (static_cast<double>(base_[v]) - ours_[v]);
  kl = std::max(kl, 0.0);  // rounding can leave a tiny negative sum
  result_.kl_sum += kl;
  result_.kl_max = std::max(result_.kl_max, kl);
  result_.top1_same += argmax(base_) == argmax(ours_);
  ++result_.tokens;
}

}  // namespace baichuan::eval
