#include "mdn/mixture.hpp"

#include <cassert>
#include <cmath>

namespace mdn {

namespace {
constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(2 pi) / 2
}

template <class S>
MixtureHead<S>::MixtureHead(int components, int output_dim, SigmaMode mode, double sigma_min,
                            Index max_n)
    : K_(components),
      L_(output_dim),
      mode_(mode),
      sigma_min_(sigma_min),
      log_sigma_min_(std::log(sigma_min)),
      max_n_(max_n),
      y_(max_n, output_dim),
      log_pi_(max_n, components),
      comp_(max_n, components),
      z_(max_n, components * output_dim),
      inv_(max_n, components * output_dim),
      dscale_(max_n, components * output_dim),
      log_sigma_(max_n),
      e_(max_n),
      m_(max_n),
      lse_(max_n),
      gamma_(max_n) {}

template <class S>
void MixtureHead<S>::scale_terms(const Eigen::Ref<const Mat<S>>& head, Index n, int j) {
  const int raw_col = K_ + K_ * L_ + j;
  auto u = log_sigma_.head(n);  // u first, log sigma after
  auto e = e_.head(n);
  auto inv = inv_.col(j).head(n);
  auto dscale = dscale_.col(j).head(n);
  if (mode_ == SigmaMode::softplus) {
    u = head.col(raw_col).head(n).template cast<double>().array();
  } else {
    u = head.col(raw_col).head(n).template cast<double>().array() - log_sigma_min_;
  }
  e = (-u.abs()).exp();
  dscale = (u >= 0).select(1.0 / (1.0 + e), e / (1.0 + e));  // logistic(u)
  if (mode_ == SigmaMode::softplus) {
    inv = 1.0 / (u.max(0.0) + e.log1p() + sigma_min_);
    dscale *= inv;
    u = -inv.log();
  } else {
    u = u.max(0.0) + e.log1p() + log_sigma_min_;
    inv = (-u).exp();
  }
}

template <class S>
double MixtureHead<S>::forward(const Eigen::Ref<const Mat<S>>& head,
                               const Eigen::Ref<const Mat<S>>& y, double* per_sample) {
  const Index n = head.rows();
  assert(n <= max_n_ && head.cols() == K_ * (1 + 2 * L_) && y.rows() == L_ && y.cols() == n);

  y_.topRows(n) = y.transpose().template cast<double>().array();

  auto log_pi = log_pi_.topRows(n);
  auto m = m_.head(n);
  log_pi = head.leftCols(K_).template cast<double>().array();
  m = log_pi.rowwise().maxCoeff();
  lse_.head(n) = m + (log_pi.colwise() - m).exp().rowwise().sum().log();
  log_pi.colwise() -= lse_.head(n);

  auto comp = comp_.topRows(n);
  comp = log_pi;
  for (int k = 0; k < K_; ++k) {
    for (int l = 0; l < L_; ++l) {
      const int j = k * L_ + l;
      scale_terms(head, n, j);
      auto z = z_.col(j).head(n);
      z = (y_.col(l).head(n) - head.col(K_ + j).head(n).template cast<double>().array()) *
          inv_.col(j).head(n);
      comp.col(k) -= 0.5 * z.square() + log_sigma_.head(n) + kHalfLog2Pi;
    }
  }

  auto lse = lse_.head(n);
  m = comp.rowwise().maxCoeff();
  lse = m + (comp.colwise() - m).exp().rowwise().sum().log();
  if (per_sample != nullptr) Eigen::Map<Eigen::ArrayXd>(per_sample, n) = -lse;
  return -lse.sum();
}

template <class S>
double MixtureHead<S>::nll(const Eigen::Ref<const Mat<S>>& head, const Eigen::Ref<const Mat<S>>& y,
                           double* per_sample) {
  return forward(head, y, per_sample);
}

template <class S>
double MixtureHead<S>::nll_and_grad(const Eigen::Ref<const Mat<S>>& head,
                                    const Eigen::Ref<const Mat<S>>& y, Eigen::Ref<Mat<S>> dhead,
                                    double* per_sample) {
  const double total = forward(head, y, per_sample);
  const Index n = head.rows();
  assert(dhead.rows() == n && dhead.cols() == head.cols());
  auto gamma = gamma_.head(n);
  for (int k = 0; k < K_; ++k) {
    gamma = (comp_.col(k).head(n) - lse_.head(n)).exp();
    dhead.col(k) = (log_pi_.col(k).head(n).exp() - gamma).template cast<S>().matrix();
    for (int l = 0; l < L_; ++l) {
      const int j = k * L_ + l;
      const auto z = z_.col(j).head(n);
      dhead.col(K_ + j) = (-gamma * z * inv_.col(j).head(n)).template cast<S>().matrix();
      dhead.col(K_ + K_ * L_ + j) =
          (gamma * (1.0 - z.square()) * dscale_.col(j).head(n)).template cast<S>().matrix();
    }
  }
  return total;
}

template <class S>
void MixtureHead<S>::parameters(const Eigen::Ref<const Mat<S>>& head,
                                Eigen::Ref<Eigen::MatrixXd> pi, Eigen::Ref<Eigen::MatrixXd> mu,
                                Eigen::Ref<Eigen::MatrixXd> sigma) {
  const Index n = head.rows();
  assert(n <= max_n_ && pi.rows() == n && mu.rows() == n && sigma.rows() == n);
  auto log_pi = log_pi_.topRows(n);
  auto m = m_.head(n);
  log_pi = head.leftCols(K_).template cast<double>().array();
  m = log_pi.rowwise().maxCoeff();
  lse_.head(n) = m + (log_pi.colwise() - m).exp().rowwise().sum().log();
  pi = (log_pi.colwise() - lse_.head(n)).exp().matrix();
  mu = head.middleCols(K_, K_ * L_).template cast<double>();
  for (int j = 0; j < K_ * L_; ++j) {
    scale_terms(head, n, j);
    sigma.col(j) = log_sigma_.head(n).exp().matrix();
  }
}

template class MixtureHead<float>;
template class MixtureHead<double>;

}  // namespace mdn
