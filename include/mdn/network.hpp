// Forward and backward passes of the MDN for one micro-batch.
//
// Activations are column-major, features x samples: one GEMM per layer per micro-batch in the
// forward pass, two (weight gradient, input gradient) in the backward pass, each into workspaces
// allocated once for up to max_n samples (gemm.hpp: no allocation, machine-independent
// blocking); the bias and the activation follow each forward product in one pass. The head
// layer is computed transposed, (n, O), so that each head row is a contiguous column for the
// mixture head's element-wise work. The work runs in the kernels of one instruction-set level
// (kernels.hpp, src/kernels/network.cpp), chosen at construction.
#pragma once

#include <Eigen/Core>

#include <memory>

#include "mdn/error.hpp"
#include "mdn/kernels.hpp"
#include "mdn/model.hpp"

namespace mdn {

template <class S>
class Network {
 public:
  Network(CpuLevel level, const ModelSpec& spec, Index max_n)
      : level_(level), spec_(spec), layout_(spec), max_n_(max_n), impl_(kernels<S>(level).network(spec, max_n)) {}

  CpuLevel level() const { return level_; }
  const ModelSpec& spec() const { return spec_; }
  const Layout& layout() const { return layout_; }
  Index max_n() const { return max_n_; }

  /// Summed NLL of the samples (x (D, n), y (L, n)), in double; per_sample (n) optional.
  double loss(const S* params, const Eigen::Ref<const Mat<S>>& x, const Eigen::Ref<const Mat<S>>& y,
              double* per_sample = nullptr) {
    check(x, y);
    return impl_->loss(params, x.data(), x.outerStride(), y.data(), y.outerStride(), x.cols(), per_sample);
  }

  /// Summed NLL and its gradient with respect to every parameter, written (not added) into
  /// grad, a buffer with the same layout as params.
  double loss_and_grad(const S* params, const Eigen::Ref<const Mat<S>>& x, const Eigen::Ref<const Mat<S>>& y,
                       S* grad) {
    check(x, y);
    return impl_->loss_and_grad(params, x.data(), x.outerStride(), y.data(), y.outerStride(), x.cols(), grad);
  }

  /// The mixture's parameters for x, in the network's (normalised) units: pi (n, K), mu and
  /// sigma (n, K*L), component-major columns, all three with the same outer stride. With full
  /// covariance sigma holds the factor's scales s and off, when given, (n, K*L(L-1)/2) its
  /// off-diagonals (full_covariance.hpp), with the same outer stride.
  void mixture(const S* params, const Eigen::Ref<const Mat<S>>& x, Eigen::Ref<Eigen::MatrixXd> pi,
               Eigen::Ref<Eigen::MatrixXd> mu, Eigen::Ref<Eigen::MatrixXd> sigma, double* off = nullptr) {
    const Index n = x.cols();
    MDN_CHECK(n <= max_n_ && x.rows() == spec_.input_dim);
    MDN_CHECK(pi.rows() == n && mu.rows() == n && sigma.rows() == n);
    MDN_CHECK(pi.outerStride() == mu.outerStride() && mu.outerStride() == sigma.outerStride());
    impl_->mixture(params, x.data(), x.outerStride(), n, pi.data(), mu.data(), sigma.data(), off, pi.outerStride());
  }

 private:
  void check(const Eigen::Ref<const Mat<S>>& x, const Eigen::Ref<const Mat<S>>& y) const {
    MDN_CHECK(x.cols() <= max_n_ && x.rows() == spec_.input_dim);
    MDN_CHECK(y.rows() == spec_.output_dim && y.cols() == x.cols());
  }

  CpuLevel level_;
  ModelSpec spec_;
  Layout layout_;
  Index max_n_;
  std::unique_ptr<NetworkKernel<S>> impl_;
};

}  // namespace mdn
