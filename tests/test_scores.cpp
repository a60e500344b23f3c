// The scores of `mdn eval` and the quantiles of `mdn predict` (scores.hpp): erfc against the C
// library's in long double, the closed-form CRPS against numerical integration of its definition
// in long double, quantiles against the CDF and the Gaussian's own quantiles, and calibration on
// data drawn from a known mixture (tools/gen_known_density.py), evaluated with the true mixture
// and with an over-confident one.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "mdn/scores.hpp"
#include "support/h5_files.hpp"
#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

using scores::Marginal;

long double phi_l(long double z) { return 0.5L * std::erfc(-z / std::sqrt(2.0L)); }

long double cdf_l(const Marginal& m, long double t) {
  long double F = 0;
  for (int k = 0; k < m.K; ++k) F += m.pi[k] * phi_l((t - m.mu[k]) / m.sigma[k]);
  return F;
}

TEST(Scores, ErfcHasFullRelativePrecision) {
  double worst = 0, at = 0;
  for (double x = -6; x <= 26.5; x += 0.00731) {
    const long double want = std::erfc(static_cast<long double>(x));
    const double rel = static_cast<double>(std::abs((scores::erfc(x) - want) / want));
    if (rel > worst) {
      worst = rel;
      at = x;
    }
  }
  EXPECT_LT(worst, 1e-14) << "at x = " << at;
  EXPECT_EQ(scores::erfc(30), 0.0);
  EXPECT_EQ(scores::erfc(-30), 2.0);
  // The lower tail of Phi keeps its relative precision.
  EXPECT_NEAR(scores::normal_cdf(-30) / static_cast<double>(phi_l(-30.0L)), 1.0, 1e-13);
}

/// int (F(t) - 1{t >= y})^2 dt by composite Simpson in long double, split at y.
long double crps_by_integration(const Marginal& m, double y) {
  double lo = y, hi = y;
  for (int k = 0; k < m.K; ++k) {
    lo = std::min(lo, m.mu[k] - 14 * m.sigma[k]);
    hi = std::max(hi, m.mu[k] + 14 * m.sigma[k]);
  }
  const auto simpson = [&](long double a, long double b, bool above) {
    const int n = 200000;  // even
    const long double h = (b - a) / n;
    long double sum = 0;
    for (int i = 0; i <= n; ++i) {
      const long double t = a + i * h;
      const long double d = cdf_l(m, t) - (above ? 1.0L : 0.0L);
      sum += (i == 0 || i == n ? 1 : (i % 2 ? 4 : 2)) * d * d;
    }
    return sum * h / 3;
  };
  return simpson(lo, y, false) + simpson(y, hi, true);
}

TEST(Scores, CrpsMatchesTheIntegralOfItsDefinition) {
  struct Case {
    std::string name;
    std::vector<double> pi, mu, sigma;
  };
  const std::vector<Case> cases = {
      {"OneComponent", {1.0}, {0.3}, {1.7}},
      {"ThreeSeparated", {0.2, 0.5, 0.3}, {-5.0, 0.0, 6.0}, {0.5, 1.0, 0.3}},
      {"ThreeOverlapping", {0.3, 0.3, 0.4}, {-0.2, 0.1, 0.3}, {1.0, 0.7, 1.4}},
      {"Narrow", {0.6, 0.4}, {1.0, 1.001}, {1e-3, 2e-3}},
  };
  for (const Case& c : cases) {
    const Marginal m{static_cast<int>(c.pi.size()), c.pi.data(), c.mu.data(), c.sigma.data()};
    for (double y : {-7.0, -0.5, 0.05, 1.0005, 2.0, 9.0}) {
      const long double want = crps_by_integration(m, y);
      EXPECT_NEAR(scores::crps(m, y), static_cast<double>(want), 1e-9 * std::max(1.0L, want))
          << c.name << " at y = " << y;
    }
  }
  // For one Gaussian, the known closed form: s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)).
  const double w = 1, mu = 2, s = 3, y = 0.5, z = (y - mu) / s;
  const double closed = s * (z * (2 * scores::normal_cdf(z) - 1) + 2 * scores::normal_pdf(z) - 1 / std::sqrt(M_PI));
  EXPECT_NEAR(scores::crps({1, &w, &mu, &s}, y), closed, 1e-14);
}

TEST(Scores, QuantilesInvertTheCdf) {
  const std::vector<double> pi = {0.2, 0.5, 0.3}, mu = {-5.0, 0.0, 6.0}, sigma = {0.5, 1.0, 0.3};
  const Marginal m{3, pi.data(), mu.data(), sigma.data()};
  const double tol = 1e-6;
  for (double p : {1e-9, 0.001, 0.05, 0.2, 0.2000001, 0.5, 0.7, 0.95, 0.999999}) {
    const double q = scores::quantile(m, p, tol);
    // The exact quantile lies within tol of q: F changes sign across [q - tol, q + tol].
    EXPECT_LE(cdf_l(m, q - tol), p) << p;
    EXPECT_GE(cdf_l(m, q + tol), p) << p;
  }
  // One component: the Gaussian's quantiles mu + s Phi^-1(p), Phi^-1 by bisection in long double.
  const double w = 1, mu1 = -1.5, s1 = 0.25;
  for (double p : {0.001, 0.05, 0.5, 0.9, 0.995}) {
    long double lo = -40, hi = 40;
    for (int i = 0; i < 200; ++i) (phi_l((lo + hi) / 2) < p ? lo : hi) = (lo + hi) / 2;
    const double want = mu1 + s1 * static_cast<double>(lo);
    EXPECT_NEAR(scores::quantile({1, &w, &mu1, &s1}, p, 1e-6 * s1), want, 1e-6 * s1) << p;
  }
}

/// Calibration of the mixtures in `file` (its true pi, mu and sigma, the scales multiplied by
/// `scale`) against its y.
scores::Calibration calibrate(const std::string& file, double scale) {
  const Array pi = read_array(file, "pi_true"), mu = read_array(file, "mu_true"), sigma = read_array(file, "sigma_true"),
              y = read_array(file, "y");
  const std::size_t N = pi.dims[0], K = pi.dims[1], L = mu.dims[2];
  scores::Calibration cal(static_cast<int>(L));
  std::vector<double> b(3 * K * L), yy(L), one(L, 1.0);
  std::vector<Marginal> ms(L);
  for (std::size_t i = 0; i < N; ++i) {
    for (std::size_t l = 0; l < L; ++l) {
      double* w = b.data() + 3 * K * l;
      for (std::size_t k = 0; k < K; ++k) {
        w[k] = pi(i, k);
        w[K + k] = mu(i, k, l);
        w[2 * K + k] = sigma(i, k, l) * scale;
      }
      ms[l] = {static_cast<int>(K), w, w + K, w + 2 * K};
      yy[l] = y(i, l);
    }
    cal.add_row(ms.data(), yy.data(), one.data());
  }
  return cal;
}

TEST(Scores, TheTrueMixtureIsCalibratedAndAnOverconfidentOneIsNot) {
  TempDir dir;
  const std::string file = dir / "kd.h5";
  const RunResult r = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tools/gen_known_density.py", file,
                           "--rows", "20000", "--outputs", "3", "--seed", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  // No ranks here: the sums of one process (reduce() is exercised by the eval tests).
  scores::Calibration truth = calibrate(file, 1.0), narrow = calibrate(file, 0.5);
  const double N = 20000;
  // Within 4 binomial standard errors of uniform and nominal for the truth; outside for halved
  // scales, whose central intervals hold far fewer rows than they claim.
  const auto outside = [&](std::int64_t count, double p) {
    return std::abs(static_cast<double>(count) - N * p) > 4 * std::sqrt(N * p * (1 - p));
  };
  for (int l = 0; l < 3; ++l) {
    SCOPED_TRACE("output " + std::to_string(l));
    for (std::int64_t c : truth.pit_histogram(l)) EXPECT_FALSE(outside(c, 0.1)) << c;
    int bad_bins = 0;
    for (std::int64_t c : narrow.pit_histogram(l)) bad_bins += outside(c, 0.1) ? 1 : 0;
    EXPECT_GE(bad_bins, 4);
    for (std::size_t a = 0; a < scores::kLevels.size(); ++a) {
      EXPECT_FALSE(outside(truth.inside[static_cast<std::size_t>(l)][a], scores::kLevels[a])) << scores::kLevels[a];
      EXPECT_TRUE(outside(narrow.inside[static_cast<std::size_t>(l)][a], scores::kLevels[a])) << scores::kLevels[a];
    }
    // The ECDF's noise at N = 20000 is about 0.003; the halved scales' error is about 0.04 here
    // (for a single Gaussian it would be 0.10: the mixtures' spread of means keeps part of it).
    std::printf("output %d: calibration error %.4f (true mixture), %.4f (scales halved)\n", l,
                truth.calibration_error(l), narrow.calibration_error(l));
    EXPECT_LT(truth.calibration_error(l), 0.01);
    EXPECT_GT(narrow.calibration_error(l), 0.03);
    // The CRPS is proper: the truth scores better on average.
    double t = 0, n = 0;
    for (std::size_t i = 0; i < 20000; ++i) {
      t += truth.crps_per_row[i * 3 + static_cast<std::size_t>(l)];
      n += narrow.crps_per_row[i * 3 + static_cast<std::size_t>(l)];
    }
    EXPECT_LT(t, n);
  }
}

}  // namespace
}  // namespace mdn::test
