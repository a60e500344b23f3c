// Single-process training on Bishop's inverse problem: a mixture learns the three-branched
// conditional density, a single Gaussian cannot. (Best held-out NLL of any unimodal model is
// about -0.66 nats; the true conditional's is about -1.29.)
#include <gtest/gtest.h>

#include <cstdio>

#include "mdn/clip.hpp"
#include "mdn/network.hpp"
#include "mdn/optimizer.hpp"
#include "mdn/schedule.hpp"
#include "support/bishop.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

/// Trains an MDN with K components with Adam on minibatches; returns the held-out mean NLL.
double train_and_evaluate(int K, const BishopData& train, const BishopData& held_out) {
  ModelSpec spec;
  spec.components = K;
  spec.hidden = {24, 24};
  const Index m = 100;
  const Index N = train.x.cols();
  const CpuLevel level = best_built_level();
  Network<float> net(level, spec, m);
  const Layout& layout = net.layout();
  Vec<float> params(layout.size()), grad(layout.size());
  initialize(params.data(), layout, seed());
  OptimizerSpec os;
  Optimizer<float> opt(os, layout, level);
  ScheduleSpec sched;
  sched.kind = ScheduleKind::cosine;
  sched.min_lr = 1e-4;
  ClipSpec clip_spec;
  clip_spec.global_norm = 5.0;

  const int epochs = 400;
  const std::int64_t total = epochs * (N / m);
  std::vector<Index> perm(static_cast<std::size_t>(N));
  Mat<float> xb(1, m), yb(1, m);
  std::int64_t step = 0;
  for (int e = 0; e < epochs; ++e) {
    for (Index i = 0; i < N; ++i) perm[static_cast<std::size_t>(i)] = i;
    rng::Sequence r(seed(), rng::kPermutation + static_cast<std::uint64_t>(e));
    for (Index i = N - 1; i > 0; --i)
      std::swap(perm[static_cast<std::size_t>(i)],
                perm[r.below(static_cast<std::uint64_t>(i) + 1)]);
    for (Index b = 0; b + m <= N; b += m) {
      for (Index j = 0; j < m; ++j) {
        xb(0, j) = train.x(0, perm[static_cast<std::size_t>(b + j)]);
        yb(0, j) = train.y(0, perm[static_cast<std::size_t>(b + j)]);
      }
      net.loss_and_grad(params.data(), xb, yb, grad.data());
      grad /= static_cast<float>(m);
      clip(level, grad.data(), grad.size(), clip_spec);
      opt.step(params.data(), grad.data(), learning_rate(sched, 1e-2, step++, total));
    }
  }
  double nll = 0;
  const Index n = held_out.x.cols();
  for (Index b = 0; b < n; b += m) {
    const Index len = std::min(m, n - b);
    nll += net.loss(params.data(), held_out.x.middleCols(b, len), held_out.y.middleCols(b, len));
  }
  return nll / static_cast<double>(n);
}

TEST(TrainBishop, MixtureLearnsTheBranchesSingleGaussianCannot) {
  const BishopData train = bishop(3000, seed());
  const BishopData held_out = bishop(2000, seed() + 1);
  const double mixture = train_and_evaluate(5, train, held_out);
  const double single = train_and_evaluate(1, train, held_out);
  std::printf("held-out NLL: K=5 %.4f, K=1 %.4f (nats per sample)\n", mixture, single);
  EXPECT_LT(mixture, -0.9);
  EXPECT_GT(single, -0.7);
}

}  // namespace
}  // namespace mdn::test
