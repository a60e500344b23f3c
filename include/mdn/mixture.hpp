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
// Cost: O(n K L) element-wise work, vectorised along the samples (each head row is a contiguous
// column of the (n x O) head block).
#pragma once

#include <Eigen/Core>

#include "mdn/model.hpp"

namespace mdn {

template <class S>
class MixtureHead {
 public:
  MixtureHead(int components, int output_dim, SigmaMode mode, double sigma_min, Index max_n);

  Index max_n() const { return max_n_; }

  /// Sum over the n = head.rows() samples of -log p(y_j | head_j), in double.
  /// head: (n, O) head outputs, a sample per row. y: (L, n) targets, a sample per column.
  /// per_sample: optional (n) output of each sample's NLL.
  double nll(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
             double* per_sample = nullptr);

  /// nll(), and the gradient of the summed NLL with respect to head into dhead (n, O).
  double nll_and_grad(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
                      Eigen::Ref<Mat<S>> dhead, double* per_sample = nullptr);

  /// The mixture's parameters for the n samples of head: pi (n, K), mu and sigma (n, K*L),
  /// component-major columns, in double.
  void parameters(const Eigen::Ref<const Mat<S>>& head, Eigen::Ref<Eigen::MatrixXd> pi,
                  Eigen::Ref<Eigen::MatrixXd> mu, Eigen::Ref<Eigen::MatrixXd> sigma);

 private:
  double forward(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
                 double* per_sample);
  /// log sigma, 1/sigma and (dsigma/draw)/sigma of column j of the raw scales.
  void scale_terms(const Eigen::Ref<const Mat<S>>& head, Index n, int j);

  int K_;
  int L_;
  SigmaMode mode_;
  double sigma_min_;
  double log_sigma_min_;
  Index max_n_;
  // Workspaces, (max_n, ...), column-major, allocated once.
  Eigen::ArrayXXd y_;        // (n, L)    targets, transposed
  Eigen::ArrayXXd log_pi_;   // (n, K)
  Eigen::ArrayXXd comp_;     // (n, K)    log pi_k + log N_k
  Eigen::ArrayXXd z_;        // (n, K*L)  (y - mu) / sigma
  Eigen::ArrayXXd inv_;      // (n, K*L)  1 / sigma
  Eigen::ArrayXXd dscale_;   // (n, K*L)  (dsigma/draw) / sigma
  Eigen::ArrayXd log_sigma_; // (n)       of the current (k, l)
  Eigen::ArrayXd e_;         // (n)       exp(-|u|)
  Eigen::ArrayXd m_;         // (n)       row maxima
  Eigen::ArrayXd lse_;       // (n)       log p(y | x)
  Eigen::ArrayXd gamma_;     // (n)       responsibilities of the current k
};

extern template class MixtureHead<float>;
extern template class MixtureHead<double>;

}  // namespace mdn
