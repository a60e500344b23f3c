#include "mdn/network.hpp"

#include <algorithm>
#include <cassert>

namespace mdn {

template <class S>
Network<S>::Network(const ModelSpec& spec, Index max_n)
    : spec_(spec),
      layout_(spec),
      max_n_(max_n),
      head_(max_n, spec.head_rows()),
      dhead_(max_n, spec.head_rows()),
      mixture_(spec.components, spec.output_dim, spec.sigma, spec.sigma_min, max_n) {
  int widest = 1;
  for (int w : spec.hidden) {
    act_.emplace_back(w, max_n);
    widest = std::max(widest, w);
  }
  for (auto& d : delta_) d.resize(widest, max_n);
  // The products of layer i, for n <= max_n samples (in = layer_in(i), out = layer_out(i)):
  //   hidden forward  A_i (out, n)    = W_i (out, in) A_{i-1} (in, n)
  //   head forward    H (n, O)        = A^T (n, in) W^T (in, O)
  //   weight grad     dW_i (out, in)  = dZ_i (out, n) A_{i-1}^T (n, in), row-major like W
  //   input grad      dA_{i-1} (in, n) = W_i^T (in, out) dZ_i (out, n)
  const int L = spec.layers();
  for (int i = 0; i < L; ++i) {
    const Index in = spec.layer_in(i);
    const Index out = spec.layer_out(i);
    const bool head = i + 1 == L;
    fwd_.emplace_back(head ? max_n : out, head ? out : max_n, in, false, gemm_ws_);
    dw_.emplace_back(out, in, max_n, true, gemm_ws_);
    dx_.emplace_back(in, max_n, out, false, gemm_ws_);
  }
}

template <class S>
Eigen::Block<Mat<S>> Network<S>::forward(const S* params, const Eigen::Ref<const Mat<S>>& x) {
  const Index n = x.cols();
  assert(n <= max_n_ && x.rows() == spec_.input_dim);
  const int hidden = static_cast<int>(act_.size());
  for (int i = 0; i < hidden; ++i) {
    const auto layer = layer_view(params, layout_, i);
    auto a = act_[static_cast<std::size_t>(i)].leftCols(n);  // (w_i, n)
    const Operand<const S> input =
        i == 0 ? operand(x) : operand(act_[static_cast<std::size_t>(i - 1)].leftCols(n));
    fwd_[static_cast<std::size_t>(i)].run(operand(layer.W), input, mutable_operand(a));
    a.colwise() += layer.b;
    if (spec_.activation == Activation::tanh) {
      a = a.array().tanh().matrix();
    } else {
      a = a.array().max(S(0)).matrix();
    }
  }
  const auto out = layer_view(params, layout_, hidden);
  auto head = head_.topRows(n);  // (n, O)
  const Operand<const S> input = hidden == 0 ? operand(x) : operand(act_.back().leftCols(n));
  fwd_.back().run(input.t(), operand(out.W).t(), mutable_operand(head));
  head.rowwise() += out.b.transpose();
  return head;
}

template <class S>
double Network<S>::loss(const S* params, const Eigen::Ref<const Mat<S>>& x,
                        const Eigen::Ref<const Mat<S>>& y, double* per_sample) {
  return mixture_.nll(forward(params, x), y, per_sample);
}

template <class S>
double Network<S>::loss_and_grad(const S* params, const Eigen::Ref<const Mat<S>>& x,
                                 const Eigen::Ref<const Mat<S>>& y, S* grad) {
  const Index n = x.cols();
  auto head = forward(params, x);
  auto dhead = dhead_.topRows(n);
  const double total = mixture_.nll_and_grad(head, y, dhead);

  const int hidden = static_cast<int>(act_.size());
  // Head layer: head = A^T W^T + b^T, so dW = dhead^T A^T, db = colsum(dhead), dA = W^T dhead^T.
  {
    auto g = layer_view(grad, layout_, hidden);
    const auto p = layer_view(params, layout_, hidden);
    g.b = dhead.colwise().sum().transpose();
    const Operand<const S> input = hidden == 0 ? operand(x) : operand(act_.back().leftCols(n));
    dw_.back().run(operand(dhead).t(), input.t(), mutable_operand(g.W));
    if (hidden == 0) return total;
    auto da = delta_[0].topLeftCorner(input.rows, n);
    dx_.back().run(operand(p.W).t(), operand(dhead).t(), mutable_operand(da));
  }
  // Hidden layers, last to first; delta_[cur] holds dL/dA_i on entry.
  int cur = 0;
  for (int i = hidden - 1; i >= 0; --i) {
    const auto& act = act_[static_cast<std::size_t>(i)];
    const auto a = act.leftCols(n);
    auto dz = delta_[cur].topLeftCorner(act.rows(), n);
    if (spec_.activation == Activation::tanh) {
      dz.array() *= S(1) - a.array().square();
    } else {
      dz.array() *= (a.array() > S(0)).template cast<S>();
    }
    auto g = layer_view(grad, layout_, i);
    g.b = dz.rowwise().sum();
    const auto k = static_cast<std::size_t>(i);
    const Operand<const S> input = i == 0 ? operand(x) : operand(act_[k - 1].leftCols(n));
    dw_[k].run(operand(dz), input.t(), mutable_operand(g.W));
    if (i > 0) {
      const auto p = layer_view(params, layout_, i);
      auto da = delta_[1 - cur].topLeftCorner(input.rows, n);
      dx_[k].run(operand(p.W).t(), operand(dz), mutable_operand(da));
      cur = 1 - cur;
    }
  }
  return total;
}

template <class S>
void Network<S>::mixture(const S* params, const Eigen::Ref<const Mat<S>>& x,
                         Eigen::Ref<Eigen::MatrixXd> pi, Eigen::Ref<Eigen::MatrixXd> mu,
                         Eigen::Ref<Eigen::MatrixXd> sigma) {
  mixture_.parameters(forward(params, x), pi, mu, sigma);
}

template class Network<float>;
template class Network<double>;

}  // namespace mdn
