#include "mdn/scores.hpp"

#include <algorithm>
#include <cmath>

#include "mdn/detmath.hpp"
#include "mdn/error.hpp"
#include "mdn/exact.hpp"

namespace mdn::scores {

namespace {

constexpr double kInvSqrtPi = 0.56418958354775628695;   // 1 / sqrt(pi)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)
constexpr double kSqrtHalf = 0.70710678118654752440;    // 1 / sqrt(2)

/// e^(-x^2) without the rounding of x^2 in the exponent: x = hi + lo with hi of 26 bits, so that
/// hi^2 is exact and the rest is small.
double exp_minus_square(double x) {
  const double hi = static_cast<double>(static_cast<float>(x));
  const double lo = x - hi;
  return det::exp(-hi * hi) * det::exp(-lo * (2 * hi + lo));
}

/// erf(x) for 0 <= x < 2: (2 / sqrt pi) e^(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!, every term
/// positive (no cancellation).
double erf_series(double x) {
  const double x2 = 2 * x * x;
  double term = x, sum = x;
  for (int n = 1; n < 200 && term > 1e-17 * sum; ++n) {
    term *= x2 / (2 * n + 1);
    sum += term;
  }
  return 2 * kInvSqrtPi * exp_minus_square(x) * sum;
}

/// erfc(x) for x >= 1.5: e^(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
/// the continued fraction evaluated from a fixed depth backwards (deep enough for 1e-16 at 1.5).
double erfc_fraction(double x) {
  const int depth = x < 3 ? 400 : (x < 6 ? 120 : 40);
  double f = x;
  for (int n = depth; n >= 1; --n) f = x + 0.5 * n / f;
  return kInvSqrtPi * exp_minus_square(x) / f;
}

/// A(m, s) = m (2 Phi(m / s) - 1) + 2 s phi(m / s) = E|X - 0| for X ~ N(m, s^2).
double abs_moment(double m, double s) {
  const double z = m / s;
  return m * (2 * normal_cdf(z) - 1) + 2 * s * normal_pdf(z);
}

}  // namespace

double erfc(double x) {
  if (std::isnan(x)) return x;
  if (x < 0) return 2 - erfc(-x);
  if (x > 27.3) return 0;  // below the smallest subnormal
  if (x < 1.5) return 1 - erf_series(x);
  return erfc_fraction(x);
}

double normal_cdf(double z) { return 0.5 * erfc(-z * kSqrtHalf); }

double normal_pdf(double z) { return kInvSqrt2Pi * det::exp(-0.5 * z * z); }

double cdf(const Marginal& m, double t) {
  double F = 0;
  for (int k = 0; k < m.K; ++k) F += m.pi[k] * normal_cdf((t - m.mu[k]) / m.sigma[k]);
  return std::min(F, 1.0);
}

double pdf(const Marginal& m, double t) {
  double f = 0;
  for (int k = 0; k < m.K; ++k) f += m.pi[k] * normal_pdf((t - m.mu[k]) / m.sigma[k]) / m.sigma[k];
  return f;
}

double crps(const Marginal& m, double y) {
  double a = 0, b = 0;
  for (int k = 0; k < m.K; ++k) {
    a += m.pi[k] * abs_moment(y - m.mu[k], m.sigma[k]);
    // The pairs (k, j) and (j, k) are equal, and A(0, s) = 2 s phi(0) on the diagonal.
    b += m.pi[k] * m.pi[k] * abs_moment(0.0, std::sqrt(2.0) * m.sigma[k]);
    for (int j = 0; j < k; ++j)
      b += 2 * m.pi[k] * m.pi[j] *
           abs_moment(m.mu[k] - m.mu[j], std::sqrt(m.sigma[k] * m.sigma[k] + m.sigma[j] * m.sigma[j]));
  }
  return a - 0.5 * b;
}

double quantile(const Marginal& m, double p, double tol) {
  MDN_CHECK(p > 0 && p < 1 && tol > 0 && m.K >= 1);
  // F(lo) < p < F(hi): 40 standard deviations past every component.
  double lo = m.mu[0] - 40 * m.sigma[0], hi = m.mu[0] + 40 * m.sigma[0];
  Index heaviest = 0;
  for (int k = 0; k < m.K; ++k) {
    lo = std::min(lo, m.mu[k] - 40 * m.sigma[k]);
    hi = std::max(hi, m.mu[k] + 40 * m.sigma[k]);
    if (m.pi[k] > m.pi[heaviest]) heaviest = k;
  }
  double x = m.mu[heaviest];
  for (int it = 0; it < 400 && hi - lo > tol; ++it) {
    const double f = cdf(m, x) - p;
    if (f == 0) return x;
    (f < 0 ? lo : hi) = x;
    const double d = pdf(m, x);
    double next = d > 0 ? x - f / d : 0.5 * (lo + hi);
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);  // Newton left the bracket: bisect
    if (std::abs(next - x) < 0.25 * tol) return next;        // Newton converged
    x = next;
  }
  return 0.5 * (lo + hi);
}

Calibration::Calibration(int output_dim)
    : L(output_dim),
      crps_sum(static_cast<std::size_t>(output_dim), 0.0),
      pit_fine(static_cast<std::size_t>(output_dim)),
      inside(static_cast<std::size_t>(output_dim)) {
  for (auto& h : pit_fine) h.fill(0);
  for (auto& c : inside) c.fill(0);
}

void Calibration::add_row(const Marginal* marginals, const double* y, const double* crps_scale) {
  for (int l = 0; l < L; ++l) {
    const Marginal& m = marginals[l];
    const double u = cdf(m, y[l]);
    const auto lu = static_cast<std::size_t>(l);
    pit_fine[lu][static_cast<std::size_t>(std::clamp(static_cast<int>(u * kFineBins), 0, kFineBins - 1))] += 1;
    for (std::size_t a = 0; a < kLevels.size(); ++a)
      if (u >= 0.5 * (1 - kLevels[a]) && u <= 0.5 * (1 + kLevels[a])) inside[lu][a] += 1;
    crps_per_row.push_back(crps(m, y[l]) * crps_scale[l]);
  }
  ++rows;
}

void Calibration::add_hdr(double above_fraction) {
  for (std::size_t a = 0; a < kLevels.size(); ++a)
    if (above_fraction <= kLevels[a]) hdr_inside[a] += 1;
  ++hdr_rows;
}

void Calibration::reduce(Comm& comm) {
  const Eigen::Map<const Eigen::MatrixXd> values(crps_per_row.data(), L, rows);
  crps_sum = exact_sums(values, comm);
  // Every count in one integer allreduce.
  std::vector<std::int64_t> counts;
  counts.push_back(rows);
  counts.push_back(hdr_rows);
  for (int l = 0; l < L; ++l) {
    const auto lu = static_cast<std::size_t>(l);
    counts.insert(counts.end(), pit_fine[lu].begin(), pit_fine[lu].end());
    counts.insert(counts.end(), inside[lu].begin(), inside[lu].end());
  }
  counts.insert(counts.end(), hdr_inside.begin(), hdr_inside.end());
  comm.allreduce(counts.data(), counts.size(), ReduceOp::sum);
  std::size_t at = 0;
  rows = counts[at++];
  hdr_rows = counts[at++];
  for (int l = 0; l < L; ++l) {
    const auto lu = static_cast<std::size_t>(l);
    for (auto& c : pit_fine[lu]) c = counts[at++];
    for (auto& c : inside[lu]) c = counts[at++];
  }
  for (auto& c : hdr_inside) c = counts[at++];
}

std::array<std::int64_t, kPitBins> Calibration::pit_histogram(int l) const {
  std::array<std::int64_t, kPitBins> h{};
  constexpr int per = kFineBins / kPitBins;
  for (int i = 0; i < kFineBins; ++i)
    h[static_cast<std::size_t>(i / per)] += pit_fine[static_cast<std::size_t>(l)][static_cast<std::size_t>(i)];
  return h;
}

double Calibration::calibration_error(int l) const {
  double cumulative = 0, err = 0;
  for (int i = 0; i < kFineBins; ++i) {
    cumulative += static_cast<double>(pit_fine[static_cast<std::size_t>(l)][static_cast<std::size_t>(i)]);
    err += std::abs(cumulative / static_cast<double>(rows) - static_cast<double>(i + 1) / kFineBins);
  }
  return err / kFineBins;
}

double Calibration::coverage(int l, std::size_t level) const {
  return static_cast<double>(inside[static_cast<std::size_t>(l)][level]) / static_cast<double>(rows);
}

double Calibration::hdr_coverage(std::size_t level) const {
  return static_cast<double>(hdr_inside[level]) / static_cast<double>(hdr_rows);
}

}  // namespace mdn::scores
