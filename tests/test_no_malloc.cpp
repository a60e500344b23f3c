// No heap allocation in forward + backward (and the optimizer, clipping) after warm-up, checked
// with Eigen's runtime guard in the checked build of the core.
#include <gtest/gtest.h>

#include "mdn/clip.hpp"
#include "mdn/network.hpp"
#include "mdn/optimizer.hpp"
#include "support/levels.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

struct MallocGuard {
  MallocGuard() { Eigen::internal::set_is_malloc_allowed(false); }
  ~MallocGuard() { Eigen::internal::set_is_malloc_allowed(true); }
};

template <class S>
void steps_without_allocation(CpuLevel level, const ModelSpec& spec, Index m) {
  SCOPED_TRACE(level_name(level));
  Network<S> net(level, spec, m);
  const Layout& layout = net.layout();
  Vec<S> params(layout.size()), grad(layout.size());
  initialize(params.data(), layout, seed());
  OptimizerSpec os;
  os.kind = OptimizerKind::adamw;
  os.weight_decay = 0.01;
  Optimizer<S> opt(os, layout, level);
  ClipSpec cs;
  cs.value = 0.5;
  cs.global_norm = 1.0;
  const Mat<S> x = uniform_matrix<S>(spec.input_dim, m, -1, 1, seed(), 1);
  const Mat<S> y = uniform_matrix<S>(spec.output_dim, m, -1, 1, seed(), 2);
  const Index short_n = m / 3;  // the short last micro-batch of an epoch

  // Warm-up: one full and one short micro-batch.
  net.loss_and_grad(params.data(), x, y, grad.data());
  net.loss_and_grad(params.data(), x.leftCols(short_n), y.leftCols(short_n), grad.data());

  MallocGuard guard;
  // The guard is live: an allocation throws (eigen_assert in the checked build).
  EXPECT_THROW(Vec<S> v(64), std::logic_error);
  for (int step = 0; step < 3; ++step) {
    EXPECT_NO_THROW({
      net.loss_and_grad(params.data(), x, y, grad.data());
      net.loss_and_grad(params.data(), x.leftCols(short_n), y.leftCols(short_n), grad.data());
      net.loss(params.data(), x, y);
      clip(level, grad.data(), grad.size(), cs);
      opt.step(params.data(), grad.data(), 1e-3);
    }) << "step " << step;
  }
}

TEST(NoMalloc, GuardFiresOutsideTheStep) {
  MallocGuard guard;
  EXPECT_THROW(Eigen::MatrixXd m(10, 10), std::logic_error);
}

TEST(NoMalloc, SmallTanhNetwork) {
  ModelSpec spec;
  spec.input_dim = 3;
  spec.output_dim = 2;
  spec.components = 5;
  spec.hidden = {32, 32};
  for (CpuLevel level : runnable_levels()) {
    steps_without_allocation<float>(level, spec, 64);
    steps_without_allocation<double>(level, spec, 64);
  }
}

TEST(NoMalloc, WiderReluNetworkExpSigma) {
  ModelSpec spec;
  spec.input_dim = 8;
  spec.output_dim = 2;
  spec.components = 5;
  spec.hidden = {256, 256, 256};
  spec.activation = Activation::relu;
  spec.sigma = SigmaMode::exp;
  for (CpuLevel level : runnable_levels()) steps_without_allocation<float>(level, spec, 128);
}

TEST(NoMalloc, FullCovarianceHead) {
  ModelSpec spec;
  spec.input_dim = 8;
  spec.output_dim = 4;
  spec.components = 5;
  spec.hidden = {64, 64};
  spec.covariance = Covariance::full;
  for (CpuLevel level : runnable_levels()) {
    steps_without_allocation<float>(level, spec, 128);
    steps_without_allocation<double>(level, spec, 64);
  }
}

}  // namespace
}  // namespace mdn::test
