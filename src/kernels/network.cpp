// Forward and backward passes of the MDN for one micro-batch, at one level (network.hpp).
//
// Activations are column-major, features x samples: one GEMM per layer per micro-batch in the
// forward pass, two (weight gradient, input gradient) in the backward pass, each into
// workspaces allocated once for up to max_n samples (gemm.cpp: no allocation, machine-independent
// blocking). The head layer is computed transposed, (n, O), so that each head row is a
// contiguous column for the mixture head's element-wise work.
#include "level.hpp"


namespace mdn::MDN_LEVEL {

namespace {

template <class S>
using Mat = mdn::Mat<S>;

/// dZ = dA * act'(Z) in place, from the layer's output A (tanh: 1 - A^2; relu: A > 0), and the
/// bias gradient db = the row sums of dZ, in one pass over dZ and A (rows x n, column-major):
/// dZ is read once instead of twice (at the medium model's 256 x 512 floats it is as large as a
/// Zen 3 core's L2). Each row's sum adds the columns in order, whatever the buffers' alignment;
/// the rows past the last whole packet go through a packet buffer, the same instructions.
template <class S, Activation F>
void activation_grad(const S* a, Index lda, S* dz, Index ldz, Index rows, Index n, S* db) {
  using P = Packet<S>;
  constexpr Index W = kPacket<S>;
  const auto deriv = [](const P& d, const P& x) {
    if constexpr (F == Activation::tanh) return ei::pmul(d, ei::psub(ei::pset1<P>(S(1)), ei::pmul(x, x)));
    else return ei::pmul(d, ei::pand(ei::pcmp_lt(ei::pzero(x), x), ei::pset1<P>(S(1))));
  };
  const Index whole = rows / W * W;
  for (Index i = 0; i < whole; i += W) ei::pstoreu(db + i, ei::pset1<P>(S(0)));
  alignas(64) S tail_sum[W] = {};
  for (Index j = 0; j < n; ++j) {
    const S* aj = a + j * lda;
    S* dj = dz + j * ldz;
    for (Index i = 0; i < whole; i += W) {
      const P d = deriv(ei::ploadu<P>(dj + i), ei::ploadu<P>(aj + i));
      ei::pstoreu(dj + i, d);
      ei::pstoreu(db + i, ei::padd(ei::ploadu<P>(db + i), d));
    }
    if (whole < rows) {
      alignas(64) S bd[W] = {};
      alignas(64) S ba[W] = {};
      std::copy(dj + whole, dj + rows, bd);
      std::copy(aj + whole, aj + rows, ba);
      const P d = deriv(ei::pload<P>(bd), ei::pload<P>(ba));
      ei::pstore(bd, d);
      std::copy(bd, bd + (rows - whole), dj + whole);
      ei::pstore(tail_sum, ei::padd(ei::pload<P>(tail_sum), d));
    }
  }
  std::copy(tail_sum, tail_sum + (rows - whole), db + whole);
}

template <class S>
class NetworkImpl final : public NetworkKernel<S> {
 public:
  NetworkImpl(const ModelSpec& spec, Index max_n);

  double loss(const S* params, const S* x, Index ld_x, const S* y, Index ld_y, Index n, double* per_sample) override {
    const FlushDenormals flush;
    const Operand<const S> head = forward(params, x, ld_x, n);
    return mixture_.nll(head.data, head.stride, y, ld_y, n, per_sample);
  }
  double loss_and_grad(const S* params, const S* x, Index ld_x, const S* y, Index ld_y, Index n, S* grad) override;
  void mixture(const S* params, const S* x, Index ld_x, Index n, double* pi, double* mu, double* sigma, double* off,
               Index ld) override {
    const FlushDenormals flush;
    const Operand<const S> head = forward(params, x, ld_x, n);
    mixture_.parameters(head.data, head.stride, n, pi, mu, sigma, off, ld);
  }

 private:
  /// The head outputs (n, O) of the n samples of x (D, n), a view of the workspace.
  Operand<const S> forward(const S* params, const S* x, Index ld_x, Index n);
  Operand<const S> input_of(int layer, const S* x, Index ld_x, Index n) const {
    if (layer == 0) return {x, spec_.input_dim, n, ld_x, false};
    const Mat<S>& a = act_[static_cast<std::size_t>(layer - 1)];
    return {a.data(), a.rows(), n, a.rows(), false};
  }

  ModelSpec spec_;
  Layout layout_;
  Index max_n_;
  std::vector<Mat<S>> act_;  // act_[i]: (hidden[i], max_n) output of hidden layer i
  Mat<S> head_;              // (max_n, O)
  Mat<S> dhead_;             // (max_n, O)
  Mat<S> delta_[2];          // (max width, max_n) back-propagated gradients, ping-pong
  // The head's bias gradient, summed here and then copied into the caller's buffer: Eigen's
  // vectorised column sums order their additions by the destination's alignment, and the
  // caller's buffer may sit anywhere (the reducer's shared terms do), while the bits must not
  // change. (The hidden layers' sums, activation_grad's, do not depend on alignment.)
  Vec<S> bias_grad_;         // (O)
  MixtureHead<S> mixture_;
  GemmWorkspace<S> gemm_ws_;
  std::vector<Gemm<S>> fwd_;  // fwd_[i]: layer i's output
  std::vector<Gemm<S>> dw_;   // dw_[i]: layer i's weight gradient
  std::vector<Gemm<S>> dx_;   // dx_[i]: gradient of layer i's input (i >= 1)
};

template <class S>
NetworkImpl<S>::NetworkImpl(const ModelSpec& spec, Index max_n)
    : spec_(spec),
      layout_(spec),
      max_n_(max_n),
      head_(max_n, spec.head_rows()),
      dhead_(max_n, spec.head_rows()),
      mixture_(spec.components, spec.output_dim, spec.sigma, spec.sigma_min, spec.covariance, max_n) {
  int widest = 1;
  for (int w : spec.hidden) {
    act_.emplace_back(w, max_n);
    widest = std::max(widest, w);
  }
  for (auto& d : delta_) d.resize(widest, max_n);
  bias_grad_.resize(spec.head_rows());
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
Operand<const S> NetworkImpl<S>::forward(const S* params, const S* x, Index ld_x, Index n) {
  MDN_CHECK(n <= max_n_);
  const int hidden = static_cast<int>(act_.size());
  for (int i = 0; i < hidden; ++i) {
    const auto layer = layer_view(params, layout_, i);
    Mat<S>& a = act_[static_cast<std::size_t>(i)];  // (w_i, n) of (w_i, max_n)
    // A_i = act(W_i A_{i-1} + b_i): the bias and the activation in the product's last pass.
    Epilogue<S> ep;
    ep.row_bias = layer.b.data();
    ep.activation = spec_.activation == Activation::tanh ? Act::tanh : Act::relu;
    fwd_[static_cast<std::size_t>(i)].run({layer.W.data(), layer.W.rows(), layer.W.cols(), layer.W.cols(), true},
                                          input_of(i, x, ld_x, n), {a.data(), a.rows(), n, a.rows(), false}, ep);
  }
  const auto out = layer_view(params, layout_, hidden);
  const Operand<const S> w{out.W.data(), out.W.rows(), out.W.cols(), out.W.cols(), true};  // (O, in)
  Epilogue<S> ep;  // head (n, O) = A^T W^T + b^T: a bias per column
  ep.col_bias = out.b.data();
  fwd_.back().run(input_of(hidden, x, ld_x, n).t(), w.t(), {head_.data(), n, head_.cols(), head_.rows(), false}, ep);
  return {head_.data(), n, head_.cols(), head_.rows(), false};
}

template <class S>
double NetworkImpl<S>::loss_and_grad(const S* params, const S* x, Index ld_x, const S* y, Index ld_y, Index n,
                                     S* grad) {
  const FlushDenormals flush;
  const Operand<const S> h = forward(params, x, ld_x, n);
  const double total = mixture_.nll_and_grad(h.data, h.stride, y, ld_y, n, dhead_.data(), dhead_.rows(), nullptr);
  const auto dhead = dhead_.topRows(n);  // (n, O)
  const Operand<const S> dh{dhead_.data(), n, dhead_.cols(), dhead_.rows(), false};

  const int hidden = static_cast<int>(act_.size());
  // Head layer: head = A^T W^T + b^T, so dW = dhead^T A^T, db = colsum(dhead), dA = W^T dhead^T.
  {
    auto g = layer_view(grad, layout_, hidden);
    const auto p = layer_view(params, layout_, hidden);
    auto db = bias_grad_.head(g.b.size());
    db = dhead.colwise().sum().transpose();
    g.b = db;
    const Operand<const S> input = input_of(hidden, x, ld_x, n);
    dw_.back().run(dh.t(), input.t(), {g.W.data(), g.W.rows(), g.W.cols(), g.W.cols(), true});
    if (hidden == 0) return total;
    Mat<S>& da = delta_[0];
    dx_.back().run(Operand<const S>{p.W.data(), p.W.rows(), p.W.cols(), p.W.cols(), true}.t(), dh.t(),
                   {da.data(), input.rows, n, da.rows(), false});
  }
  // Hidden layers, last to first; delta_[cur] holds dL/dA_i on entry.
  int cur = 0;
  for (int i = hidden - 1; i >= 0; --i) {
    const Mat<S>& act = act_[static_cast<std::size_t>(i)];
    Mat<S>& dz = delta_[cur];  // (rows, n) of it
    const Index rows = act.rows();
    auto g = layer_view(grad, layout_, i);
    if (spec_.activation == Activation::tanh)
      activation_grad<S, Activation::tanh>(act.data(), act.rows(), dz.data(), dz.rows(), rows, n, g.b.data());
    else
      activation_grad<S, Activation::relu>(act.data(), act.rows(), dz.data(), dz.rows(), rows, n, g.b.data());
    const Operand<const S> input = input_of(i, x, ld_x, n);
    const Operand<const S> dzo{dz.data(), rows, n, dz.rows(), false};
    dw_[static_cast<std::size_t>(i)].run(dzo, input.t(), {g.W.data(), g.W.rows(), g.W.cols(), g.W.cols(), true});
    if (i > 0) {
      const auto p = layer_view(params, layout_, i);
      Mat<S>& da = delta_[1 - cur];
      dx_[static_cast<std::size_t>(i)].run(Operand<const S>{p.W.data(), p.W.rows(), p.W.cols(), p.W.cols(), true}.t(),
                                           dzo, {da.data(), input.rows, n, da.rows(), false});
      cur = 1 - cur;
    }
  }
  return total;
}

}  // namespace

template <class S>
std::unique_ptr<NetworkKernel<S>> make_network(const ModelSpec& spec, Index max_n) {
  return std::make_unique<NetworkImpl<S>>(spec, max_n);
}

template std::unique_ptr<NetworkKernel<float>> make_network<float>(const ModelSpec&, Index);
template std::unique_ptr<NetworkKernel<double>> make_network<double>(const ModelSpec&, Index);

}  // namespace mdn::MDN_LEVEL
