#include "mdn/full_covariance.hpp"

#include <algorithm>
#include <cmath>

#include "mdn/detmath.hpp"
#include "mdn/error.hpp"

namespace mdn {

namespace {

constexpr double kLog2Pi = 1.8378770664093454836;

/// log(1 + x) for x >= 0 to about 1 ulp with det::log (the correction of Goldberg's trick).
double log1p_det(double x) {
  const double u = 1.0 + x;
  if (u == 1.0) return x;
  return det::log(u) * x / (u - 1.0);
}

/// 1 / (1 + e^-x) without exponentiating a positive number.
double logistic(double x) {
  if (x >= 0) return 1.0 / (1.0 + det::exp(-x));
  const double e = det::exp(x);
  return e / (1.0 + e);
}

double logsumexp(const double* t, int n) {
  const double m = *std::max_element(t, t + n);
  if (!std::isfinite(m)) return m;
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += det::exp(t[i] - m);
  return m + det::log(sum);
}

}  // namespace

Index full_head_outputs(int components, int output_dim) {
  return head_outputs(components, output_dim, Covariance::full);
}

FullCovarianceMixture::FullCovarianceMixture(int components, int output_dim, SigmaMode mode, double sigma_min)
    : K_(components),
      L_(output_dim),
      mode_(mode),
      sigma_min_(sigma_min),
      log_sigma_min_(det::log(sigma_min)),
      r_(static_cast<std::size_t>(output_dim)),
      s_(r_.size()),
      ds_(r_.size()),
      v_(r_.size()),
      t_(static_cast<std::size_t>(components)) {
  MDN_CHECK(components >= 1 && output_dim >= 1 && sigma_min > 0);
}

void FullCovarianceMixture::scale(double raw, double& s, double& log_s, double& ds_over_s) const {
  if (mode_ == SigmaMode::softplus) {  // s = softplus(raw) + sigma_min, ds/dr = logistic(raw)
    s = std::max(raw, 0.0) + log1p_det(det::exp(-std::abs(raw))) + sigma_min_;
    log_s = det::log(s);
    ds_over_s = logistic(raw) / s;
  } else {  // log s = logaddexp(raw, log sigma_min); (ds/dr) / s = logistic(u)
    const double u = raw - log_sigma_min_;
    log_s = std::max(u, 0.0) + log1p_det(det::exp(-std::abs(u))) + log_sigma_min_;
    s = det::exp(log_s);
    ds_over_s = logistic(u);
  }
}

double FullCovarianceMixture::nll(const double* head, const double* y, double* dhead) {
  const int K = K_, L = L_;
  const Index KL = static_cast<Index>(K) * L;
  const Index off_per = static_cast<Index>(L) * (L - 1) / 2;
  const double* a = head;
  const double lse_a = logsumexp(a, K);
  // The component's terms; recomputed for the gradient (L is small: cheaper than keeping them).
  const auto component = [&](int k) {
    const double* mu = head + K + static_cast<Index>(k) * L;
    const double* raw = head + K + KL + static_cast<Index>(k) * L;
    const double* off = head + K + 2 * KL + static_cast<Index>(k) * off_per;
    double log_det = 0;  // sum_i log s_i
    for (int i = 0; i < L; ++i) {
      r_[static_cast<std::size_t>(i)] = y[i] - mu[i];
      double log_s = 0;
      scale(raw[i], s_[static_cast<std::size_t>(i)], log_s, ds_[static_cast<std::size_t>(i)]);
      log_det += log_s;
    }
    double q = 0;
    for (int i = 0, o = 0; i < L; ++i) {  // v = U r, U upper triangular
      double vi = r_[static_cast<std::size_t>(i)] / s_[static_cast<std::size_t>(i)];
      for (int j = i + 1; j < L; ++j, ++o) vi += off[o] * r_[static_cast<std::size_t>(j)];
      v_[static_cast<std::size_t>(i)] = vi;
      q += vi * vi;
    }
    return -0.5 * L * kLog2Pi - log_det - 0.5 * q;
  };
  for (int k = 0; k < K; ++k) t_[static_cast<std::size_t>(k)] = (a[k] - lse_a) + component(k);
  const double lse = logsumexp(t_.data(), K);
  if (dhead == nullptr) return -lse;

  for (int k = 0; k < K; ++k) {
    const double gamma = det::exp(std::min(t_[static_cast<std::size_t>(k)] - lse, 0.0));
    dhead[k] = det::exp(std::min(a[k] - lse_a, 0.0)) - gamma;
    component(k);
    const double* off = head + K + 2 * KL + static_cast<Index>(k) * off_per;
    double* dmu = dhead + K + static_cast<Index>(k) * L;
    double* draw = dhead + K + KL + static_cast<Index>(k) * L;
    double* doff = dhead + K + 2 * KL + static_cast<Index>(k) * off_per;
    // U^T v: column j of U is U_jj = 1 / s_j and U_ij (i < j).
    for (int j = 0; j < L; ++j) dmu[j] = v_[static_cast<std::size_t>(j)] / s_[static_cast<std::size_t>(j)];
    for (int i = 0, o = 0; i < L; ++i)
      for (int j = i + 1; j < L; ++j, ++o) {
        dmu[j] += off[o] * v_[static_cast<std::size_t>(i)];
        doff[o] = gamma * v_[static_cast<std::size_t>(i)] * r_[static_cast<std::size_t>(j)];
      }
    for (int i = 0; i < L; ++i) {
      const auto u = static_cast<std::size_t>(i);
      dmu[i] *= -gamma;
      draw[i] = gamma * (1.0 - v_[u] * r_[u] / s_[u]) * ds_[u];
    }
  }
  return -lse;
}

}  // namespace mdn
