// The full-covariance mixture's reference (full_covariance.hpp): its NLL against a mixture of
// multivariate normals formed from the explicit covariance in long double, its gradient against
// finite differences, and its agreement with the diagonal head (L = 1, and zero off-diagonals).
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <string>
#include <vector>

#include "mdn/full_covariance.hpp"
#include "mdn/mixture.hpp"
#include "mdn/random.hpp"
#include "support/levels.hpp"

namespace mdn::test {
namespace {

constexpr double kFloor = 1e-3;
using LMat = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
using LVec = Eigen::Matrix<long double, Eigen::Dynamic, 1>;

struct Case {
  std::string name;
  int K, L;
  double off_scale = 1;  // the off-diagonal outputs' spread
  double raw_shift = 0;  // added to the raw diagonal outputs (-40: every factor at its floor)
  double y_shift = 0;    // added to y (50: far from every component)
};

std::vector<Case> cases() {
  std::vector<Case> c;
  for (int L : {1, 2, 3, 5})
    for (int K : {1, 4}) c.push_back({"L" + std::to_string(L) + "K" + std::to_string(K), K, L});
  c.push_back({"AtTheFloor", 4, 3, 1, -40, 0});
  c.push_back({"LargeOffDiagonals", 4, 3, 30, 0, 0});
  c.push_back({"FarFromEveryComponent", 4, 3, 1, 0, 50});
  c.push_back({"FarAndCorrelatedL5", 1, 5, 5, 0, 20});
  return c;
}

struct Sample {
  std::vector<double> head, y;
};

Sample draw(const Case& c, std::uint64_t stream) {
  rng::Sequence r(11, rng::kTestData + stream);
  const Index KL = static_cast<Index>(c.K) * c.L;
  Sample s;
  s.head.resize(static_cast<std::size_t>(full_head_outputs(c.K, c.L)));
  for (Index i = 0; i < static_cast<Index>(s.head.size()); ++i) {
    double v = r.normal();
    if (i >= c.K + KL && i < c.K + 2 * KL) v = 0.5 * v + c.raw_shift;
    if (i >= c.K + 2 * KL) v *= c.off_scale;
    s.head[static_cast<std::size_t>(i)] = v;
  }
  for (int l = 0; l < c.L; ++l) s.y.push_back(r.normal() + c.y_shift);
  return s;
}

/// The NLL through the covariance itself: s from its closed form, U, P = U^T U, Sigma = P^-1,
/// and each component's log density from Sigma's Cholesky factor, in long double.
long double nll_through_covariance(const Case& c, SigmaMode mode, const Sample& s) {
  const int K = c.K, L = c.L;
  const Index KL = static_cast<Index>(K) * L, per = static_cast<Index>(L) * (L - 1) / 2;
  const double* h = s.head.data();
  std::vector<long double> t(static_cast<std::size_t>(K));
  long double amax = h[0];
  for (int k = 1; k < K; ++k) amax = std::max<long double>(amax, h[k]);
  long double asum = 0;
  for (int k = 0; k < K; ++k) asum += std::exp(static_cast<long double>(h[k]) - amax);
  for (int k = 0; k < K; ++k) {
    LMat U = LMat::Zero(L, L);
    LVec r(L);
    for (int i = 0, o = 0; i < L; ++i) {
      const long double raw = h[K + KL + static_cast<Index>(k) * L + i];
      const long double sigma =
          (mode == SigmaMode::softplus ? std::log1p(std::exp(raw)) : std::exp(raw)) + static_cast<long double>(kFloor);
      U(i, i) = 1 / sigma;
      for (int j = i + 1; j < L; ++j, ++o) U(i, j) = h[K + 2 * KL + static_cast<Index>(k) * per + o];
      r(i) = static_cast<long double>(s.y[static_cast<std::size_t>(i)]) - h[K + static_cast<Index>(k) * L + i];
    }
    const LMat Sigma = (U.transpose() * U).inverse();
    const Eigen::LLT<LMat> llt(Sigma);
    long double log_det = 0;
    for (int i = 0; i < L; ++i) log_det += 2 * std::log(static_cast<long double>(llt.matrixL()(i, i)));
    const long double quad = r.dot(llt.solve(r));
    const long double log_pi = h[k] - amax - std::log(asum);
    t[static_cast<std::size_t>(k)] =
        log_pi - 0.5L * (L * std::log(2 * 3.14159265358979323846264338327950288L) + log_det + quad);
  }
  long double m = t[0];
  for (long double x : t) m = std::max(m, x);
  long double sum = 0;
  for (long double x : t) sum += std::exp(x - m);
  return -(m + std::log(sum));
}

class Full : public testing::TestWithParam<std::tuple<Case, SigmaMode>> {};

TEST_P(Full, NllMatchesTheDensityThroughTheCovariance) {
  const auto& [c, mode] = GetParam();
  FullCovarianceMixture mix(c.K, c.L, mode, kFloor);
  for (std::uint64_t n = 0; n < 5; ++n) {
    const Sample s = draw(c, n);
    const double got = mix.nll(s.head.data(), s.y.data());
    const long double want = nll_through_covariance(c, mode, s);
    // The covariance route squares the factor's condition number: its own rounding sets the bar.
    const double tol = (c.off_scale > 5 ? 1e-7 : 1e-10) * std::max(1.0, std::abs(static_cast<double>(want)));
    EXPECT_NEAR(got, static_cast<double>(want), tol) << "sample " << n;
  }
}

TEST_P(Full, GradientMatchesFiniteDifferences) {
  const auto& [c, mode] = GetParam();
  FullCovarianceMixture mix(c.K, c.L, mode, kFloor);
  for (std::uint64_t n = 0; n < 3; ++n) {
    Sample s = draw(c, 100 + n);
    std::vector<double> grad(s.head.size());
    const double value = mix.nll(s.head.data(), s.y.data(), grad.data());
    EXPECT_EQ(value, mix.nll(s.head.data(), s.y.data()));
    for (std::size_t i = 0; i < s.head.size(); ++i) {
      const double x = s.head[i];
      const double h = 1e-6 * std::max(1.0, std::abs(x));
      s.head[i] = x + h;
      const double up = mix.nll(s.head.data(), s.y.data());
      s.head[i] = x - h;
      const double down = mix.nll(s.head.data(), s.y.data());
      s.head[i] = x;
      const double fd = (up - down) / (2 * h);
      // Central differences: error of order h^2 f''' and rounding |f| eps / h.
      const double tol = 1e-6 * std::max({1.0, std::abs(grad[i]), std::abs(value) * 1e-3});
      EXPECT_NEAR(grad[i], fd, tol) << "output " << i << " of " << s.head.size() << ", sample " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Full, testing::Combine(testing::ValuesIn(cases()),
                                                       testing::Values(SigmaMode::softplus, SigmaMode::exp)),
                         [](const testing::TestParamInfo<std::tuple<Case, SigmaMode>>& p) {
                           return std::get<0>(p.param).name +
                                  (std::get<1>(p.param) == SigmaMode::softplus ? "Softplus" : "Exp");
                         });

/// The diagonal head's NLL and gradient for the first K (1 + 2 L) outputs of `head` (one sample).
double diagonal(CpuLevel level, int K, int L, SigmaMode mode, const std::vector<double>& head,
                const std::vector<double>& y, std::vector<double>& grad) {
  MixtureHead<double> diag(level, K, L, mode, kFloor, 1);
  const Index O = static_cast<Index>(K) * (1 + 2 * L);
  Mat<double> h(1, O), yy(L, 1), d(1, O);
  for (Index i = 0; i < O; ++i) h(0, i) = head[static_cast<std::size_t>(i)];
  for (int l = 0; l < L; ++l) yy(l, 0) = y[static_cast<std::size_t>(l)];
  const double v = diag.nll_and_grad(h, yy, d);
  grad.assign(d.data(), d.data() + O);
  return v;
}

TEST(FullCovariance, ForOneOutputItIsTheDiagonalHead) {
  for (CpuLevel level : runnable_levels())
    for (SigmaMode mode : {SigmaMode::softplus, SigmaMode::exp})
      for (int K : {1, 4}) {
        SCOPED_TRACE(level_name(level) + " K " + std::to_string(K));
        const Case c{"", K, 1};
        FullCovarianceMixture mix(K, 1, mode, kFloor);
        ASSERT_EQ(full_head_outputs(K, 1), static_cast<Index>(K) * 3);
        for (std::uint64_t n = 0; n < 5; ++n) {
          const Sample s = draw(c, 200 + n);
          std::vector<double> g_full(s.head.size()), g_diag;
          const double full = mix.nll(s.head.data(), s.y.data(), g_full.data());
          const double diag = diagonal(level, K, 1, mode, s.head, s.y, g_diag);
          EXPECT_NEAR(full, diag, 1e-12 * std::max(1.0, std::abs(diag)));
          for (std::size_t i = 0; i < g_diag.size(); ++i)
            EXPECT_NEAR(g_full[i], g_diag[i], 1e-12 * std::max(1.0, std::abs(g_diag[i]))) << "output " << i;
        }
      }
}

TEST(FullCovariance, WithZeroOffDiagonalsItIsTheDiagonalHead) {
  // The layout's first K (1 + 2 L) outputs are the diagonal head's.
  const CpuLevel level = runnable_levels().back();
  const Case c{"", 4, 3};
  FullCovarianceMixture mix(c.K, c.L, SigmaMode::softplus, kFloor);
  for (std::uint64_t n = 0; n < 5; ++n) {
    Sample s = draw(c, 300 + n);
    const Index diag_outputs = static_cast<Index>(c.K) * (1 + 2 * c.L);
    for (std::size_t i = static_cast<std::size_t>(diag_outputs); i < s.head.size(); ++i) s.head[i] = 0;
    std::vector<double> g_full(s.head.size()), g_diag;
    const double full = mix.nll(s.head.data(), s.y.data(), g_full.data());
    const double diag = diagonal(level, c.K, c.L, SigmaMode::softplus, s.head, s.y, g_diag);
    EXPECT_NEAR(full, diag, 1e-12 * std::max(1.0, std::abs(diag)));
    for (std::size_t i = 0; i < g_diag.size(); ++i)
      EXPECT_NEAR(g_full[i], g_diag[i], 1e-12 * std::max(1.0, std::abs(g_diag[i]))) << "output " << i;
  }
}

/// The kernel of every level (MixtureHead with Covariance::full, vectorised along the samples)
/// against the scalar reference, for n samples at once: each sample's NLL and gradient.
template <class S>
void kernel_against_reference(const Case& c, SigmaMode mode, double tol) {
  const Index n = 37;  // not a multiple of any packet: the last packet is partly padding
  const Index O = full_head_outputs(c.K, c.L);
  Mat<S> head(n, O), y(c.L, n), dhead(n, O);
  for (Index j = 0; j < n; ++j) {
    const Sample s = draw(c, 400 + static_cast<std::uint64_t>(j));
    for (Index i = 0; i < O; ++i) head(j, i) = static_cast<S>(s.head[static_cast<std::size_t>(i)]);
    for (int l = 0; l < c.L; ++l) y(l, j) = static_cast<S>(s.y[static_cast<std::size_t>(l)]);
  }
  FullCovarianceMixture ref(c.K, c.L, mode, kFloor);
  for (CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(level_name(level));
    MixtureHead<S> kernel(level, c.K, c.L, mode, kFloor, n, Covariance::full);
    ASSERT_EQ(kernel.outputs(), O);
    std::vector<double> per(static_cast<std::size_t>(n));
    const double total = kernel.nll_and_grad(head, y, dhead, per.data());
    double ref_total = 0;
    for (Index j = 0; j < n; ++j) {
      std::vector<double> h(static_cast<std::size_t>(O)), yy(static_cast<std::size_t>(c.L)), g(h.size());
      for (Index i = 0; i < O; ++i) h[static_cast<std::size_t>(i)] = static_cast<double>(head(j, i));
      for (int l = 0; l < c.L; ++l) yy[static_cast<std::size_t>(l)] = static_cast<double>(y(l, j));
      const double v = ref.nll(h.data(), yy.data(), g.data());
      ref_total += v;
      EXPECT_NEAR(per[static_cast<std::size_t>(j)], v, tol * std::max(1.0, std::abs(v))) << "sample " << j;
      for (Index i = 0; i < O; ++i) {
        const double want = g[static_cast<std::size_t>(i)];
        // A float gradient is rounded once from its double value.
        const double slack = std::is_same_v<S, float> ? 1e-7 * std::abs(want) : 0.0;
        EXPECT_NEAR(static_cast<double>(dhead(j, i)), want, tol * std::max(1.0, std::abs(want)) + slack)
            << "sample " << j << ", output " << i;
      }
    }
    EXPECT_NEAR(total, ref_total, tol * std::max(1.0, std::abs(ref_total)));
    EXPECT_EQ(kernel.nll(head, y), total);
  }
}

TEST_P(Full, EveryLevelsKernelMatchesTheReference) {
  const auto& [c, mode] = GetParam();
  kernel_against_reference<double>(c, mode, 1e-11);
  kernel_against_reference<float>(c, mode, 1e-11);
}

TEST(FullCovariance, TheKernelsResultForASampleDoesNotDependOnItsPosition) {
  const Case c{"", 4, 3, 2};
  const Index O = full_head_outputs(c.K, c.L), n = 21;
  Mat<float> head(n, O), y(c.L, n), d(n, O), one_h(1, O), one_y(c.L, 1), one_d(1, O);
  for (Index j = 0; j < n; ++j) {
    const Sample s = draw(c, 500 + static_cast<std::uint64_t>(j));
    for (Index i = 0; i < O; ++i) head(j, i) = static_cast<float>(s.head[static_cast<std::size_t>(i)]);
    for (int l = 0; l < c.L; ++l) y(l, j) = static_cast<float>(s.y[static_cast<std::size_t>(l)]);
  }
  for (CpuLevel level : runnable_levels()) {
    MixtureHead<float> all(level, c.K, c.L, SigmaMode::softplus, kFloor, n, Covariance::full);
    MixtureHead<float> single(level, c.K, c.L, SigmaMode::softplus, kFloor, 1, Covariance::full);
    std::vector<double> per(static_cast<std::size_t>(n));
    all.nll_and_grad(head, y, d, per.data());
    for (Index j = 0; j < n; ++j) {
      one_h = head.row(j);
      one_y = y.col(j);
      double p = 0;
      single.nll_and_grad(one_h, one_y, one_d, &p);
      EXPECT_EQ(p, per[static_cast<std::size_t>(j)]) << level_name(level) << " sample " << j;
      EXPECT_EQ(Mat<float>(one_d), Mat<float>(d.row(j))) << level_name(level) << " sample " << j;
    }
  }
}

}  // namespace
}  // namespace mdn::test
