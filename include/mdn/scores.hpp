// How far a predicted mixture can be trusted (README, "Using a trained model": `mdn eval` and
// `mdn predict --quantiles`): proper scores, calibration and quantiles of the mixture's
// marginals, and the coverage of its joint highest-density regions.
//
// Per output dimension l the model's marginal is a one-dimensional Gaussian mixture with weights
// pi_k, means mu_kl and standard deviations s_kl (for full covariance the square roots of the
// covariances' diagonals). Its CDF is F(t) = sum_k pi_k Phi((t - mu_kl) / s_kl), and:
//   CRPS(F, y) = int (F(t) - 1{t >= y})^2 dt
//              = sum_k pi_k A(y - mu_k, s_k) - 1/2 sum_k sum_j pi_k pi_j A(mu_k - mu_j, sqrt(s_k^2 + s_j^2)),
//     A(m, s)  = m (2 Phi(m / s) - 1) + 2 s phi(m / s)          (Grimit et al. 2006)
//   PIT u      = F(y): uniform on [0, 1] when the model is calibrated;
//   y lies in the central interval of level a exactly when (1 - a) / 2 <= u <= (1 + a) / 2.
//
// Everything is computed in double with mdn's CPU-independent exp and log (detmath.hpp) and an
// erfc of its own, so the results are the same on every CPU that runs the binary. Per row the
// numbers are a function of that row's mixture and y only; the evaluation adds them up exactly
// (sums as exact_sums, counts as integers), so they do not depend on the number of ranks.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/model.hpp"

namespace mdn::scores {

/// erfc(x), relative error below 1e-14 for every x where the result is normal (series below
/// |x| = 2, continued fraction above, both with det::exp).
double erfc(double x);
/// The standard normal CDF, Phi(z) = erfc(-z / sqrt 2) / 2, with full relative precision in the
/// lower tail.
double normal_cdf(double z);
/// The standard normal density.
double normal_pdf(double z);

/// One-dimensional Gaussian mixture: K weights (summing to 1), means and standard deviations.
struct Marginal {
  int K = 0;
  const double* pi = nullptr;
  const double* mu = nullptr;
  const double* sigma = nullptr;
};

double cdf(const Marginal& m, double t);
double pdf(const Marginal& m, double t);
/// CRPS of the mixture at y, closed form (above).
double crps(const Marginal& m, double y);
/// The p-quantile (0 < p < 1): F(q) = p by Newton steps kept inside a bracket that bisection
/// shrinks, until the bracket is narrower than tol.
double quantile(const Marginal& m, double p, double tol);

/// The central intervals and highest-density regions whose coverage `mdn eval` reports.
inline constexpr std::array<double, 4> kLevels = {0.5, 0.8, 0.9, 0.95};
inline constexpr std::array<const char*, 4> kLevelNames = {"0.5", "0.8", "0.9", "0.95"};
inline constexpr int kPitBins = 10;     ///< the reported histogram
inline constexpr int kFineBins = 100;   ///< the calibration error's CDF points

/// Sums and counts over rows, for each output dimension (and the joint HDR counts), added up
/// exactly across ranks by reduce().
struct Calibration {
  explicit Calibration(int output_dim);

  /// One row: its L marginals and observation y (in the same units; crps_scale[l] converts the
  /// CRPS to data units).
  void add_row(const Marginal* marginals, const double* y, const double* crps_scale);
  /// One row's joint HDR membership: above_fraction is the share of the model's draws whose
  /// log-density exceeds the observation's; the observation lies in the HDR of level a when it
  /// is at most a.
  void add_hdr(double above_fraction);
  /// Sums over every rank; collective. Afterwards the accessors give the global results.
  void reduce(Comm& comm);

  int L;
  std::int64_t rows = 0;      ///< rows added (per dimension: each row adds every dimension)
  std::vector<double> crps_per_row;  ///< (L x rows) CRPS values of this rank, summed exactly by reduce
  std::vector<double> crps_sum;      ///< (L) after reduce
  std::vector<std::array<std::int64_t, kFineBins>> pit_fine;  ///< (L) counts of u in [i, i+1) / 100
  std::vector<std::array<std::int64_t, kLevels.size()>> inside;  ///< (L) rows inside each central interval
  std::array<std::int64_t, kLevels.size()> hdr_inside{};         ///< rows inside each HDR
  std::int64_t hdr_rows = 0;

  double crps_mean(int l) const { return crps_sum[static_cast<std::size_t>(l)] / static_cast<double>(rows); }
  /// The 10-bin histogram of PIT values.
  std::array<std::int64_t, kPitBins> pit_histogram(int l) const;
  /// Mean over the 100 upper bin edges t of |empirical CDF of u at t - t|.
  double calibration_error(int l) const;
  double coverage(int l, std::size_t level) const;
  double hdr_coverage(std::size_t level) const;
};

}  // namespace mdn::scores
