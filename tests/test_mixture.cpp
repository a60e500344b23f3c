// The mixture head's NLL against closed forms and a direct long-double evaluation; its
// stability at extreme inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mdn/mixture.hpp"
#include "support/levels.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

constexpr double kFloor = 1e-3;

/// The raw scale that gives sigma exactly (to rounding) under mode.
double raw_for_sigma(double sigma, SigmaMode mode) {
  const double f = sigma - kFloor;
  return mode == SigmaMode::softplus ? std::log(std::expm1(f)) : std::log(f);
}

class ClosedForm : public testing::TestWithParam<SigmaMode> {};

TEST_P(ClosedForm, StandardNormalVectors) {
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    const SigmaMode mode = GetParam();
    MixtureHead<double> head(level, 1, 1, mode, kFloor, 3);
    Mat<double> h(3, 3);  // rows: samples; cols: logit, mu, raw
    h << 0.0, 0.0, raw_for_sigma(1.0, mode),  //
        0.0, 0.0, raw_for_sigma(1.0, mode),   //
        5.0, 0.0, raw_for_sigma(2.0, mode);
    Mat<double> y(1, 3);
    y << 0.0, 1.0, 0.0;
    double per[3];
    const double total = head.nll(h, y, per);
    EXPECT_NEAR(per[0], 0.9189385, 1e-7);
    EXPECT_NEAR(per[1], 1.4189385, 1e-7);
    EXPECT_NEAR(per[2], 1.6120857, 1e-7);
    EXPECT_NEAR(total, per[0] + per[1] + per[2], 1e-12);
  }
}

TEST_P(ClosedForm, EqualMixtureOfTwoIdenticalComponentsIsOneComponent) {
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    const SigmaMode mode = GetParam();
    MixtureHead<double> two(level, 2, 1, mode, kFloor, 1);
    Mat<double> h(1, 6);
    h << 0.3, 0.3, 0.5, 0.5, raw_for_sigma(0.7, mode), raw_for_sigma(0.7, mode);
    Mat<double> y(1, 1);
    y << 1.1;
    const double d = (1.1 - 0.5) / 0.7;
    EXPECT_NEAR(two.nll(h, y), 0.5 * d * d + std::log(0.7) + 0.5 * std::log(2 * M_PI), 1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ClosedForm, testing::Values(SigmaMode::softplus, SigmaMode::exp),
                         [](const auto& p) { return std::string(to_string(p.param)); });

struct Shape {
  int K, L;
  SigmaMode mode;
};

class DirectEvaluation : public testing::TestWithParam<Shape> {};

TEST_P(DirectEvaluation, MatchesLongDoubleDensity) {
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    const auto [K, L, mode] = GetParam();
    const Index n = 50;
    const int O = K * (1 + 2 * L);
    MixtureHead<double> head(level, K, L, mode, kFloor, n);
    Mat<double> h = uniform_matrix<double>(n, O, -1.5, 1.5, seed(), 10 + K * 10 + L);
    Mat<double> y = uniform_matrix<double>(L, n, -2, 2, seed(), 20 + K * 10 + L);
    std::vector<double> per(static_cast<std::size_t>(n));
    const double total = head.nll(h, y, per.data());
    long double ref_total = 0;
    for (Index j = 0; j < n; ++j) {
      const long double ref = direct_nll(h.row(j), y.col(j), K, L, mode, kFloor);
      ref_total += ref;
      EXPECT_NEAR(per[static_cast<std::size_t>(j)], static_cast<double>(ref),
                  1e-13 * std::max(1.0L, std::abs(ref)))
          << "sample " << j;
    }
    EXPECT_NEAR(total, static_cast<double>(ref_total), 1e-12 * std::abs(static_cast<double>(ref_total)));

    // The float head agrees with the double one to float precision.
    MixtureHead<float> headf(level, K, L, mode, kFloor, n);
    const double totalf = headf.nll(h.cast<float>(), y.cast<float>());
    EXPECT_NEAR(totalf, total, 1e-5 * std::abs(total));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DirectEvaluation,
                         testing::Values(Shape{1, 1, SigmaMode::softplus}, Shape{3, 1, SigmaMode::exp},
                                         Shape{3, 2, SigmaMode::softplus}, Shape{5, 3, SigmaMode::exp}),
                         [](const auto& p) {
                           return "K" + std::to_string(p.param.K) + "_L" +
                                  std::to_string(p.param.L) + "_" + to_string(p.param.mode);
                         });

template <class S>
void check_extremes(CpuLevel level, SigmaMode mode) {
  const int K = 3, L = 2, O = K * (1 + 2 * L);
  const Index n = 6;
  MixtureHead<S> head(level, K, L, mode, kFloor, n);
  Mat<S> h = Mat<S>::Zero(n, O);
  Mat<S> y = Mat<S>::Zero(L, n);
  for (Index j = 0; j < n; ++j) {
    const S sign = (j % 2 == 0) ? S(1) : S(-1);
    h.row(j).head(K) << sign * S(1e4), -sign * S(1e4), S(0);  // logits of +-1e4
    for (int c = K + K * L; c < O; ++c) h(j, c) = (c + j) % 2 == 0 ? S(50) : S(-50);  // raw scales
    // Targets 1e3 sigmas away: sigma is at least the floor, raw +50 gives sigma ~ 50 (softplus).
    y.col(j).setConstant(j < 3 ? S(1e3 * 50) : S(-1e3 * 50));
  }
  Mat<S> dh(n, O);
  double per[n];
  const double total = head.nll_and_grad(h, y, dh, per);
  EXPECT_TRUE(std::isfinite(total)) << total;
  for (double p : per) EXPECT_TRUE(std::isfinite(p));
  EXPECT_TRUE(dh.allFinite()) << dh;
  // The gradient of the logits is pi - gamma: each row sums to zero.
  EXPECT_LT(dh.leftCols(K).rowwise().sum().cwiseAbs().maxCoeff(), S(1e-5));
}

TEST(Stability, ExtremeInputsGiveFiniteLossAndGradient) {
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    check_extremes<double>(level, SigmaMode::softplus);
    check_extremes<double>(level, SigmaMode::exp);
    check_extremes<float>(level, SigmaMode::softplus);
    check_extremes<float>(level, SigmaMode::exp);
  }
}

TEST(Parameters, PiSumsToOneAndSigmaIsFloored) {
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    const int K = 4, L = 2;
    const Index n = 20;
    for (SigmaMode mode : {SigmaMode::softplus, SigmaMode::exp}) {
      MixtureHead<double> head(level, K, L, mode, kFloor, n);
      Mat<double> h = uniform_matrix<double>(n, K * (1 + 2 * L), -30, 30, seed(), 99);
      Eigen::MatrixXd pi(n, K), mu(n, K * L), sigma(n, K * L);
      head.parameters(h, pi, mu, sigma);
      EXPECT_LT((pi.rowwise().sum().array() - 1.0).abs().maxCoeff(), 1e-12);
      EXPECT_GE(sigma.minCoeff(), kFloor);
      EXPECT_EQ(mu, h.middleCols(K, K * L));
      for (Index j = 0; j < n; ++j) {
        for (int c = 0; c < K * L; ++c) {
          const double raw = h(j, K + K * L + c);
          const double f = mode == SigmaMode::softplus ? std::log1p(std::exp(raw)) : std::exp(raw);
          EXPECT_NEAR(sigma(j, c), f + kFloor, 1e-12 * (f + kFloor));
        }
      }
    }
  }
}

}  // namespace
}  // namespace mdn::test
