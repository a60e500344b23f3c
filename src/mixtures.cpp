#include "mdn/mixtures.hpp"

#include <algorithm>
#include <cmath>

#include "mdn/detmath.hpp"
#include "mdn/network.hpp"
#include "mdn/random.hpp"

namespace mdn {

Mixtures mixtures(const Checkpoint& ck, CpuLevel level, const Mat<float>& rows, bool data_units) {
  const ModelSpec& spec = ck.model;
  const Index D = spec.input_dim, K = spec.components, L = spec.output_dim, n = rows.cols();
  const Index F = spec.off_diagonals();
  const bool full = spec.covariance == Covariance::full;
  Network<float> net(level, spec, ck.micro_batch);
  Mixtures out{Eigen::MatrixXd(n, K), Eigen::MatrixXd(n, K * L), Eigen::MatrixXd(n, K * L), {}, K, L};
  Eigen::MatrixXd off_all(full ? n : 0, K * F);
  // Every block is computed in buffers of the same shape and alignment, so that vectorised and
  // scalar code paths (which round transcendental functions differently) meet the same elements
  // whatever the block's position in this rank's rows: the results do not depend on P.
  Mat<float> x(D, ck.micro_batch);
  const Index mb = ck.micro_batch;
  Eigen::MatrixXd pi(mb, K), mu(mb, K * L), sigma(mb, K * L), off(mb, full ? K * F : 0);
  for (Index j = 0; j < n; j += mb) {
    const Index len = std::min(mb, n - j);
    x.leftCols(len) = rows.block(0, j, D, len);
    // off shares pi's outer stride (mb): its columns are filled for the first len rows.
    net.mixture(ck.params.data(), x.leftCols(len), pi.topRows(len), mu.topRows(len), sigma.topRows(len),
                full ? off.data() : nullptr);
    out.pi.middleRows(j, len) = pi.topRows(len);
    out.mu.middleRows(j, len) = mu.topRows(len);
    out.sigma.middleRows(j, len) = sigma.topRows(len);
    if (full) off_all.middleRows(j, len) = off.topRows(len);
  }
  const bool scale = data_units && ck.norm.enabled;
  const Eigen::VectorXd y_std = scale ? ck.norm.y_std : Eigen::VectorXd::Ones(L);
  if (scale)
    for (Index k = 0; k < K; ++k)
      for (Index l = 0; l < L; ++l)
        out.mu.col(k * L + l) = out.mu.col(k * L + l) * ck.norm.y_std(l) + Eigen::VectorXd::Constant(n, ck.norm.y_mean(l));
  if (!full) {
    for (Index k = 0; k < K; ++k)
      for (Index l = 0; l < L; ++l) out.sigma.col(k * L + l) *= y_std(l);
    return out;
  }
  // U = diag(1 / s) + the strict upper off-diagonals; T = S_y U^-1 by back substitution, column
  // by column (U T' = I: T'_cc = s_c, T'_ic = -s_i sum_{i < q <= c} U_iq T'_qc).
  out.factor.assign(static_cast<std::size_t>(n * K * L * L), 0.0);
  Eigen::MatrixXd U(L, L), T(L, L);
  for (Index j = 0; j < n; ++j)
    for (Index k = 0; k < K; ++k) {
      U.setZero();
      for (Index i = 0, o = 0; i < L; ++i) {
        U(i, i) = 1.0 / out.sigma(j, k * L + i);
        for (Index q = i + 1; q < L; ++q, ++o) U(i, q) = off_all(j, k * F + o);
      }
      T.setZero();
      for (Index c = 0; c < L; ++c) {
        T(c, c) = out.sigma(j, k * L + c);
        for (Index i = c - 1; i >= 0; --i) {
          double acc = 0;
          for (Index q = i + 1; q <= c; ++q) acc += U(i, q) * T(q, c);
          T(i, c) = -out.sigma(j, k * L + i) * acc;
        }
      }
      double* t = out.factor.data() + (j * K + k) * L * L;
      for (Index i = 0; i < L; ++i) {
        double var = 0;
        for (Index c = 0; c < L; ++c) {
          t[i * L + c] = y_std(i) * T(i, c);
          var += t[i * L + c] * t[i * L + c];
        }
        out.sigma(j, k * L + i) = std::sqrt(var);
      }
    }
  return out;
}

void marginal_quantiles(const Mixtures& mix, const Normalization& norm, Index j, Index l,
                        const std::vector<double>& levels, double* out, Index stride) {
  const Index K = mix.K;
  std::vector<double> w(static_cast<std::size_t>(3 * K));
  const scores::Marginal m = mix.marginal(j, l, w.data(), w.data() + K, w.data() + 2 * K);
  double scale = 0;
  if (norm.enabled) {
    scale = norm.y_std(l);
  } else {  // the law of total variance, sum pi (sigma^2 + (mu - mean)^2)
    double mean = 0, var = 0;
    for (Index k = 0; k < K; ++k) mean += m.pi[k] * m.mu[k];
    for (Index k = 0; k < K; ++k) var += m.pi[k] * (m.sigma[k] * m.sigma[k] + (m.mu[k] - mean) * (m.mu[k] - mean));
    scale = std::sqrt(var);
  }
  for (std::size_t q = 0; q < levels.size(); ++q)
    out[static_cast<Index>(q) * stride] = scores::quantile(m, levels[q], 1e-6 * scale);
}

void draw_samples(const Mixtures& mix, Index j, std::uint64_t stream, std::uint64_t seed, double temperature,
                  double sigma_temperature, Index count, double* out) {
  const Index K = mix.K, L = mix.L;
  // pi_T = softmax(log pi / T), the same as softmax(logits / T).
  std::vector<double> w(static_cast<std::size_t>(K)), z(static_cast<std::size_t>(L));
  for (Index k = 0; k < K; ++k) w[static_cast<std::size_t>(k)] = det::log(mix.pi(j, k)) / temperature;
  const double top = *std::max_element(w.begin(), w.end());
  double total = 0;
  for (double& v : w) total += (v = det::exp(v - top));
  for (double& v : w) v /= total;
  for (Index s = 0; s < count; ++s) {
    rng::Sequence r(seed, stream, static_cast<std::uint64_t>(s * (1 + 2 * L)));
    const double u = r.uniform();
    Index k = 0;
    for (double acc = w[0]; k + 1 < K && u >= acc; acc += w[static_cast<std::size_t>(++k)]) {
    }
    double* y = out + s * L;
    if (!mix.full()) {
      for (Index l = 0; l < L; ++l) y[l] = mix.mu(j, k * L + l) + sigma_temperature * mix.sigma(j, k * L + l) * r.normal();
      continue;
    }
    // y = mu + T2 T z: T T^T is the component's covariance (T = S_y U^-1, upper triangular).
    for (Index l = 0; l < L; ++l) z[static_cast<std::size_t>(l)] = r.normal();
    const auto t = mix.tri(j, k);
    for (Index l = 0; l < L; ++l) {
      double v = 0;
      for (Index c = l; c < L; ++c) v += t(l, c) * z[static_cast<std::size_t>(c)];
      y[l] = mix.mu(j, k * L + l) + sigma_temperature * v;
    }
  }
}

void RowDensity::set_row(Index j) {
  constexpr double kHalfLog2Pi = 0.91893853320467274178;
  const Index K = mix_.K, L = mix_.L;
  j_ = j;
  for (Index k = 0; k < K; ++k) {
    double b = det::log(mix_.pi(j, k)) - static_cast<double>(L) * kHalfLog2Pi;
    for (Index l = 0; l < L; ++l) b -= det::log(mix_.full() ? mix_.tri(j, k)(l, l) : mix_.sigma(j, k * L + l));
    base_(k) = b;
  }
}

double RowDensity::operator()(const double* y) {
  const Index K = mix_.K, L = mix_.L, j = j_;
  for (Index k = 0; k < K; ++k) {
    double q = 0;
    if (!mix_.full()) {
      for (Index l = 0; l < L; ++l) {
        const double z = (y[l] - mix_.mu(j, k * L + l)) / mix_.sigma(j, k * L + l);
        q += z * z;
      }
    } else {  // T w = y - mu by back substitution
      const auto T = mix_.tri(j, k);
      for (Index i = L - 1; i >= 0; --i) {
        double r = y[i] - mix_.mu(j, k * L + i);
        for (Index c = i + 1; c < L; ++c) r -= T(i, c) * w_(c);
        w_(i) = r / T(i, i);
        q += w_(i) * w_(i);
      }
    }
    terms_(k) = base_(k) - 0.5 * q;
  }
  const double top = terms_.maxCoeff();
  if (!std::isfinite(top)) return top;
  double sum = 0;
  for (Index k = 0; k < K; ++k) sum += det::exp(terms_(k) - top);
  return top + det::log(sum);
}

}  // namespace mdn
