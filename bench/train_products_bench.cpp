// The matrix products of one full fine-tuning step (train/ops.h matmul_forward / matmul_backward) on
// the shape of bench/train_vs_torch.sh: hidden 512, intermediate 1376, the real 125,696 vocabulary,
// 512 rows. Per step the trainer runs each layer product 8 times (8 layers) and each head product
// 512 / kHeadChunkRows times (the head goes kHeadChunkRows = 256 rows at a time, train/train_model.h), so
//   step's product time ~= 8 x sum(layer_*) + 2 x sum(head_*)
// Names read BM_train_product/<product>_<part>_<backend>/threads:N, part = forward (out = in . W^T),
// din (din += dout . W) or dw (dW += dout^T . in). FLOP/s counts 2 x rows x in x out per product.
#include <array>

#include "bench_util.h"
#include "core/thread_pool.h"
#include "train/ops.h"
#include "train/train_model.h"

namespace baichuan::bench {
namespace {

struct TrainProduct {
  const char* name;
  int64_t N, I, O;  // rows, inputs, outputs: W is [O, I]
};
constexpr int64_t kTrainRows = 512, kTrainHidden = 512, kTrainFfn = 1376, kTrainVocab = 125696;
constexpr std::array<TrainProduct, 5> kTrainProducts{{
    {"w_pack", kTrainRows, kTrainHidden, 3 * kTrainHidden},
    {"o_proj", kTrainRows, kTrainHidden, kTrainHidden},
    {"gate_up", kTrainRows, kTrainHidden, kTrainFfn},  // gate and up: the same shape, run twice per layer
    {"down", kTrainRows, kTrainFfn, kTrainHidden},
    {"head", train::kHeadChunkRows, kTrainHidden, kTrainVocab},
}};

enum class ProductPart { Forward, Din, Dw };

void BM_train_product(benchmark::State& state, TrainProduct p, ProductPart part, kernels::Backend backend) {
  BackendScope scope(state, backend);
  if (!scope.ok()) return;
  ThreadPool pool(static_cast<int>(state.range(0)));
  const auto n_in = static_cast<size_t>(p.N * p.I), n_out = static_cast<size_t>(p.N * p.O),
             n_w = static_cast<size_t>(p.O * p.I);
  std::vector<float> in = random_floats(n_in, 31), w = random_floats(n_w, 32, 0.02f), dout = random_floats(n_out, 33);
  std::vector<float> out(n_out), din(n_in), dw(part == ProductPart::Dw ? n_w : 0);
  for (auto _ : state) {
    switch (part) {
      case ProductPart::Forward: train::matmul_forward(out.data(), in.data(), w.data(), p.N, p.I, p.O, pool); break;
      case ProductPart::Din:
        train::matmul_backward(din.data(), static_cast<float*>(nullptr), dout.data(), in.data(), w.data(), p.N, p.I,
                               p.O, pool);
        break;
      case ProductPart::Dw:
        train::matmul_backward(static_cast<float*>(nullptr), dw.data(), dout.data(), in.data(), w.data(), p.N, p.I,
                               p.O, pool);
        break;
    }
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * static_cast<double>(p.N) * static_cast<double>(p.I) * static_cast<double>(p.O));
}

const int kRegistered = [] {
  for (const TrainProduct& p : kTrainProducts)
    for (auto [part, part_name] : {std::pair{ProductPart::Forward, "forward"}, std::pair{ProductPart::Din, "din"},
                                   std::pair{ProductPart::Dw, "dw"}})
      for (auto [backend, backend_name] :
           {std::pair{kernels::Backend::Avx2, "avx2"}, std::pair{kernels::Backend::Avx512, "avx512"}}) {
        const std::string name = std::string("BM_train_product/") + p.name + "_" + part_name + "_" + backend_name;
        benchmark::RegisterBenchmark(name.c_str(), BM_train_product, p, part, backend)
            ->ArgName("threads")
            ->Arg(1)
            ->Arg(2)
            ->UseRealTime()
            ->MinTime(min_time());
      }
  return 0;
}();

}  // namespace
}  // namespace baichuan::bench
