// Finite-difference check of every parameter's analytic gradient, in double, from a table of
// cases (sizes, activations, sigma modes, and the hard corners of the mixture head).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "mdn/network.hpp"
#include "support/levels.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

struct Case {
  std::string name;
  int D, L, K;
  std::vector<int> hidden;
  Activation act;
  SigmaMode sigma;
  double h;  ///< finite-difference step (relative to max(1, |p|))
  /// Adjusts the initialised parameters and the targets to reach a corner of the head.
  std::function<void(double* params, const Layout&, Mat<double>& y, const ModelSpec&)> tweak;
  Covariance covariance = Covariance::diagonal;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

/// Pins head rows [first_row, first_row + rows) near `value`: their bias is set to it and their
/// weights scaled by `weight_scale`.
void pin_head_rows(double* params, const Layout& layout, const ModelSpec& spec, int first_row,
                   int rows, double value, double weight_scale) {
  auto head = layer_view(params, layout, spec.layers() - 1);
  head.b.segment(first_row, rows).setConstant(value);
  head.W.middleRows(first_row, rows) *= weight_scale;
}

/// Every sigma at its floor, every mean at 0.3, targets within a few floors of the means.
void sigma_at_floor(double* p, const Layout& l, Mat<double>& y, const ModelSpec& s) {
  const int K = s.components;
  const int KL = K * s.output_dim;
  pin_head_rows(p, l, s, K + KL, KL, -12.0, 0.01);  // raw scales: f(raw) ~ 1e-5 << sigma_min
  pin_head_rows(p, l, s, K, KL, 0.3, 0.0);
  y = (y.array() * 2e-3 + 0.3).matrix();
}

struct Mismatch {
  double worst = 0;  // max |fd - an| / (atol + rtol * max(|fd|, |an|)); <= 1 passes
  std::string where;
};

/// Compares the analytic gradient `an` of f at p with central differences, element by element.
Mismatch compare(const std::function<double(const Vec<double>&)>& f, Vec<double> p,
                 const Vec<double>& an, const Layout& layout, double f0, double step) {
  Mismatch m;
  // Central differences err by about h^2 |d3f| / 6 (truncation, kept small by the per-case h)
  // plus the rounding of f divided by h: allow 20 ulps of f over h, and a relative 1e-6.
  const double rtol = 1e-6;
  const double atol =
      20 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(f0)) / step;
  for (const Slot& slot : layout.slots()) {
    for (Index j = 0; j < slot.size(); ++j) {
      const Index i = slot.offset + j;
      const double h = step * std::max(1.0, std::abs(p(i)));
      const double saved = p(i);
      p(i) = saved + h;
      const double up = f(p);
      p(i) = saved - h;
      const double down = f(p);
      p(i) = saved;
      const double fd = (up - down) / (2 * h);
      const double ratio = std::abs(fd - an(i)) / (atol + rtol * std::max(std::abs(fd), std::abs(an(i))));
      if (ratio > m.worst) {
        m.worst = ratio;
        m.where = slot.name + "[" + std::to_string(j) + "]: finite difference " +
                  std::to_string(fd) + ", analytic " + std::to_string(an(i));
      }
    }
  }
  return m;
}

class GradientCheck : public testing::TestWithParam<std::tuple<Case, CpuLevel>> {};

TEST_P(GradientCheck, EveryParameterMatchesFiniteDifferences) {
  const Case& c = std::get<0>(GetParam());
  const CpuLevel level = std::get<1>(GetParam());
  ModelSpec spec;
  spec.input_dim = c.D;
  spec.output_dim = c.L;
  spec.components = c.K;
  spec.hidden = c.hidden;
  spec.activation = c.act;
  spec.sigma = c.sigma;
  spec.sigma_min = 1e-3;
  spec.covariance = c.covariance;
  const Index n = 7;
  Network<double> net(level, spec, n);
  const Layout& layout = net.layout();

  Vec<double> params(layout.size());
  initialize(params.data(), layout, seed());
  Mat<double> x = uniform_matrix<double>(c.D, n, -2, 2, seed(), 1);
  Mat<double> y = uniform_matrix<double>(c.L, n, -1, 1, seed(), 2);
  if (c.tweak) c.tweak(params.data(), layout, y, spec);

  Vec<double> grad(layout.size());
  const double f0 = net.loss_and_grad(params.data(), x, y, grad.data());
  ASSERT_TRUE(std::isfinite(f0));
  ASSERT_TRUE(grad.allFinite());
  EXPECT_EQ(f0, net.loss(params.data(), x, y)) << "loss() and loss_and_grad() disagree";

  auto f = [&](const Vec<double>& p) { return net.loss(p.data(), x, y); };
  const Mismatch m = compare(f, params, grad, layout, f0, c.h);
  EXPECT_LE(m.worst, 1.0) << "worst: " << m.where;

  // The check can fail: a gradient wrong in one element by 1% is caught.
  Vec<double> wrong = grad;
  Index biggest = 0;
  wrong.cwiseAbs().maxCoeff(&biggest);
  wrong(biggest) *= 1.01;
  EXPECT_GT(compare(f, params, wrong, layout, f0, c.h).worst, 1.0);
}

/// Full covariance: off-diagonal factors pinned large (strong correlations).
void large_off_diagonals(double* p, const Layout& l, Mat<double>&, const ModelSpec& s) {
  const int K = s.components, KL = K * s.output_dim;
  pin_head_rows(p, l, s, K + 2 * KL, K * s.off_diagonals(), 3.0, 1.0);
}

const std::vector<Case> kCases = {
    {"K1_L1_tanh_softplus", 2, 1, 1, {5}, Activation::tanh, SigmaMode::softplus, 1e-5, nullptr},
    {"K1_L2_relu_exp", 3, 2, 1, {6, 4}, Activation::relu, SigmaMode::exp, 1e-5, nullptr},
    {"K3_L1_relu_softplus", 2, 1, 3, {5}, Activation::relu, SigmaMode::softplus, 1e-5, nullptr},
    {"K3_L2_tanh_exp", 2, 2, 3, {5, 4}, Activation::tanh, SigmaMode::exp, 1e-5, nullptr},
    {"K3_L2_tanh_softplus", 1, 2, 3, {4}, Activation::tanh, SigmaMode::softplus, 1e-5, nullptr},
    {"K3_L1_relu_exp", 1, 1, 3, {8}, Activation::relu, SigmaMode::exp, 1e-5, nullptr},
    {"NoHiddenLayer", 3, 2, 3, {}, Activation::tanh, SigmaMode::softplus, 1e-5, nullptr},
    {"SigmaAtFloorSoftplus", 2, 2, 3, {5}, Activation::tanh, SigmaMode::softplus, 1e-7,
     sigma_at_floor},
    {"SigmaAtFloorExp", 2, 1, 3, {5}, Activation::relu, SigmaMode::exp, 1e-7, sigma_at_floor},
    {"TargetFarFromEveryComponent", 2, 2, 3, {5}, Activation::tanh, SigmaMode::softplus, 1e-5,
     [](double*, const Layout&, Mat<double>& y, const ModelSpec&) { y.array() += 40.0; }},
    {"Full_K3_L3_tanh_softplus", 2, 3, 3, {5}, Activation::tanh, SigmaMode::softplus, 1e-5, nullptr,
     Covariance::full},
    {"Full_K1_L4_relu_exp", 3, 4, 1, {6, 4}, Activation::relu, SigmaMode::exp, 1e-5, nullptr, Covariance::full},
    {"Full_K4_L2_LargeOffDiagonals", 2, 2, 4, {5}, Activation::tanh, SigmaMode::softplus, 1e-5,
     large_off_diagonals, Covariance::full},
    {"Full_K3_L3_SigmaAtFloor", 2, 3, 3, {5}, Activation::tanh, SigmaMode::softplus, 1e-7, sigma_at_floor,
     Covariance::full},
    {"Full_K2_L5_TargetFar", 2, 5, 2, {5}, Activation::tanh, SigmaMode::softplus, 1e-5,
     [](double*, const Layout&, Mat<double>& y, const ModelSpec&) { y.array() += 20.0; }, Covariance::full},
    {"TargetFarExp", 2, 1, 3, {5}, Activation::relu, SigmaMode::exp, 1e-5,
     [](double*, const Layout&, Mat<double>& y, const ModelSpec&) { y.array() -= 40.0; }},
    {"OneComponentHoldsNearlyAllWeight", 2, 2, 3, {5}, Activation::tanh, SigmaMode::softplus, 1e-5,
     [](double* p, const Layout& l, Mat<double>&, const ModelSpec& s) {
       pin_head_rows(p, l, s, 0, 1, 12.0, 0.01);  // pi_0 ~ 1 - 1e-5
     }},
};

INSTANTIATE_TEST_SUITE_P(Cases, GradientCheck, testing::Combine(testing::ValuesIn(kCases), testing::ValuesIn(runnable_levels())),
                         [](const testing::TestParamInfo<std::tuple<Case, CpuLevel>>& p) {
                           return std::get<0>(p.param).name + "_" + level_name(std::get<1>(p.param));
                         });

}  // namespace
}  // namespace mdn::test
