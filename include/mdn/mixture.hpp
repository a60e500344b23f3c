// The mixture head: from the network's head outputs to the negative log-likelihood and its
// gradient, for n samples at a time.
//
// Math (README, "How the model works"), per sample, with responsibilities
// gamma_k = softmax_k(log pi_k + log N_k):
//   log pi_k  = a_k - logsumexp(a)
//   sigma_kl  = f(raw_kl) + sigma_min,  f = softplus or exp
//   log N_k   = -sum_l [ z_kl^2 / 2 + log sigma_kl + log(2 pi) / 2 ],  z_kl = (y_l - mu_kl) / sigma_kl
//   NLL       = -logsumexp_k(log pi_k + log N_k)
//   dNLL/da_k      = pi_k - gamma_k
//   dNLL/dmu_kl    = -gamma_k z_kl / sigma_kl
//   dNLL/draw_kl   = gamma_k (1 - z_kl^2) / sigma_kl * dsigma/draw
//
// Numerics: everything is evaluated in double whatever the network's scalar type; no probability
// is formed outside log space and nothing is exponentiated that is not bounded above:
//   softplus: sigma = max(r, 0) + log1p(exp(-|r|)) + sigma_min, dsigma/draw = logistic(r);
//   exp:      log sigma = logaddexp(r, log sigma_min) = max(u, 0) + log1p(exp(-|u|)) + log sigma_min
//             with u = r - log sigma_min, and (dsigma/draw) / sigma = exp(r) / sigma = logistic(u);
// 1/sigma <= 1/sigma_min, gamma_k <= 1 and pi_k <= 1 are computed as exp of non-positive values.
// With full covariance (Covariance::full) each component's precision factor replaces the
// per-output sigmas: the math is in full_covariance.hpp, the numerics are the same.
// Cost: O(n K L) element-wise work (O(n K L^2) with full covariance), vectorised along the samples (src/kernels/mixture.cpp, one
// build per instruction-set level, with mdn's own packet exp and log).
#pragma once

#include <Eigen/Core>

#include <memory>

#include "mdn/error.hpp"
#include "mdn/kernels.hpp"

namespace mdn {

template <class S>
class MixtureHead {
 public:
  MixtureHead(CpuLevel level, int components, int output_dim, SigmaMode mode, double sigma_min, Index max_n,
              Covariance covariance = Covariance::diagonal)
      : K_(components),
        L_(output_dim),
        O_(head_outputs(components, output_dim, covariance)),
        max_n_(max_n),
        impl_(kernels<S>(level).mixture(components, output_dim, mode, sigma_min, covariance, max_n)) {}

  Index outputs() const { return O_; }  ///< head outputs per sample

  Index max_n() const { return max_n_; }

  /// Sum over the n = head.rows() samples of -log p(y_j | head_j), in double.
  /// head: (n, O) head outputs, a sample per row. y: (L, n) targets, a sample per column.
  /// per_sample: optional (n) output of each sample's NLL.
  double nll(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
             double* per_sample = nullptr) {
    check(head, y);
    return impl_->nll(head.data(), head.outerStride(), y.data(), y.outerStride(), head.rows(), per_sample);
  }

  /// nll(), and the gradient of the summed NLL with respect to head into dhead (n, O).
  double nll_and_grad(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
                      Eigen::Ref<Mat<S>> dhead, double* per_sample = nullptr) {
    check(head, y);
    MDN_CHECK(dhead.rows() == head.rows() && dhead.cols() == head.cols());
    return impl_->nll_and_grad(head.data(), head.outerStride(), y.data(), y.outerStride(), head.rows(),
                               dhead.data(), dhead.outerStride(), per_sample);
  }

  /// The mixture's parameters for the n samples of head: pi (n, K), mu and sigma (n, K*L),
  /// component-major columns, in double; with full covariance sigma holds the factor's scales and
  /// off, when given, (n, K*L(L-1)/2) its off-diagonals (kernels.hpp), with pi's outer stride.
  void parameters(const Eigen::Ref<const Mat<S>>& head, Eigen::Ref<Eigen::MatrixXd> pi,
                  Eigen::Ref<Eigen::MatrixXd> mu, Eigen::Ref<Eigen::MatrixXd> sigma, double* off = nullptr) {
    const Index n = head.rows();
    MDN_CHECK(n <= max_n_ && head.cols() == O_);
    MDN_CHECK(pi.rows() == n && mu.rows() == n && sigma.rows() == n);
    MDN_CHECK(pi.outerStride() == mu.outerStride() && mu.outerStride() == sigma.outerStride());
    impl_->parameters(head.data(), head.outerStride(), n, pi.data(), mu.data(), sigma.data(), off, pi.outerStride());
  }

 private:
  void check(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y) const {
    MDN_CHECK(head.rows() <= max_n_ && head.cols() == O_);
    MDN_CHECK(y.rows() == L_ && y.cols() == head.rows());
  }

  int K_;
  int L_;
  Index O_;
  Index max_n_;
  std::unique_ptr<MixtureKernel<S>> impl_;
};

}  // namespace mdn
