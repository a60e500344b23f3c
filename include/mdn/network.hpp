// Forward and backward passes of the MDN for one micro-batch.
//
// Activations are column-major, features x samples: one GEMM per layer per micro-batch in the
// forward pass, two (weight gradient, input gradient) in the backward pass, each into workspaces
// allocated once for up to max_n samples (gemm.hpp: no allocation, machine-independent
// blocking). The head layer is computed transposed, (n, O), so that each head row is a
// contiguous column for the mixture head's element-wise work.
#pragma once

#include <Eigen/Core>

#include <vector>

#include "mdn/gemm.hpp"
#include "mdn/mixture.hpp"
#include "mdn/model.hpp"

namespace mdn {

template <class S>
class Network {
 public:
  Network(const ModelSpec& spec, Index max_n);

  const ModelSpec& spec() const { return spec_; }
  const Layout& layout() const { return layout_; }
  Index max_n() const { return max_n_; }

  /// Forward pass of the n = x.cols() <= max_n samples of x (D, n); returns the head outputs
  /// (n, O), a view into the workspace valid until the next call.
  Eigen::Block<Mat<S>> forward(const S* params, const Eigen::Ref<const Mat<S>>& x);

  /// Summed NLL of the samples (x (D, n), y (L, n)), in double; per_sample (n) optional.
  double loss(const S* params, const Eigen::Ref<const Mat<S>>& x,
              const Eigen::Ref<const Mat<S>>& y, double* per_sample = nullptr);

  /// Summed NLL and its gradient with respect to every parameter, written (not added) into
  /// grad, a buffer with the same layout as params.
  double loss_and_grad(const S* params, const Eigen::Ref<const Mat<S>>& x,
                       const Eigen::Ref<const Mat<S>>& y, S* grad);

  /// The mixture's parameters for x, in the network's (normalised) units; see MixtureHead.
  void mixture(const S* params, const Eigen::Ref<const Mat<S>>& x, Eigen::Ref<Eigen::MatrixXd> pi,
               Eigen::Ref<Eigen::MatrixXd> mu, Eigen::Ref<Eigen::MatrixXd> sigma);

 private:
  ModelSpec spec_;
  Layout layout_;
  Index max_n_;
  std::vector<Mat<S>> act_;  // act_[i]: (hidden[i], max_n) output of hidden layer i
  Mat<S> head_;              // (max_n, O)
  Mat<S> dhead_;             // (max_n, O)
  Mat<S> delta_[2];          // (max width, max_n) back-propagated gradients, ping-pong
  MixtureHead<S> mixture_;
  GemmWorkspace<S> gemm_ws_;
  std::vector<Gemm<S>> fwd_;    // fwd_[i]: layer i's output
  std::vector<Gemm<S>> dw_;     // dw_[i]: layer i's weight gradient
  std::vector<Gemm<S>> dx_;     // dx_[i]: gradient of layer i's input (i >= 1)
};

extern template class Network<float>;
extern template class Network<double>;

}  // namespace mdn
