// The full-covariance mixture head (model.covariance: full, README "How the model works"): each
// component's covariance given by the upper-triangular Cholesky factor U of its precision,
// Sigma^-1 = U^T U. Its density and gradient need one triangular matrix-vector product per sample
// and component; no L x L matrix is formed or factorised.
//
// Head outputs per sample, K (1 + L + L (L + 1) / 2) of them; the first K (1 + 2 L) are laid out
// as the diagonal head's, so that for L = 1 the two heads are the same:
//   [0, K)                     logits a_k
//   [K, K + K L)               means mu_{k,i} at K + k L + i
//   [K + K L, K + 2 K L)       raw diagonal r_{k,i}: U_ii = 1 / s_{k,i}, s = f(r) + sigma_min
//                              (f = softplus or exp, as the diagonal head's sigma)
//   [K + 2 K L, ...)           off-diagonals U_ij, i < j, raw: component k's L (L - 1) / 2
//                              contiguous, row by row: (0,1), (0,2), ..., (0,L-1), (1,2), ...
// Per sample and component, with r = y - mu and v = U r:
//   log N_k = -L/2 log(2 pi) - sum_i log s_i - |v|^2 / 2
//   NLL     = -logsumexp_k(log pi_k + log N_k),  gamma_k = softmax_k(log pi_k + log N_k)
//   dNLL/da_k   = pi_k - gamma_k
//   dNLL/dmu_k  = -gamma_k U^T v
//   dNLL/dr_ki  = gamma_k (1 - v_i r_i / s_i) (ds/dr) / s_i       (for L = 1: the diagonal head's)
//   dNLL/dU_kij = gamma_k v_i r_j                                   (i < j)
// The floor s_i >= sigma_min bounds the density per component as the diagonal head's does.
//
// This is the reference implementation: scalar, in double, with mdn's CPU-independent exp and
// log (detmath.hpp). Training and inference use every level's vectorised kernel (MixtureHead with
// Covariance::full, src/kernels/mixture.cpp); the tests hold the kernels to this reference.
#pragma once

#include <vector>

#include "mdn/model.hpp"

namespace mdn {

/// K (1 + L + L (L + 1) / 2): the full-covariance head's outputs per sample.
Index full_head_outputs(int components, int output_dim);

class FullCovarianceMixture {
 public:
  FullCovarianceMixture(int components, int output_dim, SigmaMode mode, double sigma_min);

  /// -log p(y | head) of one sample (head: full_head_outputs values; y: L values); when dhead is
  /// given, also the gradient with respect to each head output.
  double nll(const double* head, const double* y, double* dhead = nullptr);

  int components() const { return K_; }
  int output_dim() const { return L_; }

 private:
  /// s_i, log s_i and (ds/dr) / s_i of a raw diagonal output.
  void scale(double raw, double& s, double& log_s, double& ds_over_s) const;

  int K_, L_;
  SigmaMode mode_;
  double sigma_min_, log_sigma_min_;
  // Scratch of one component, and the per-component terms.
  std::vector<double> r_, s_, ds_, v_, t_;
};

}  // namespace mdn
