// The model's shape and its parameter layout.
//
// Letters: N rows, D inputs, L outputs, K components, B global batch, m micro-batch, P ranks.
//
// An MDN here is an MLP: D -> hidden[0] -> ... -> hidden[H-1] -> O, with O = K + 2*K*L head rows
// in this order (README, "How the model works"):
//   rows [0, K)            logits a_k                      -> pi = softmax(a)
//   rows [K, K+K*L)        means mu_{k,l} at K + k*L + l   (component-major)
//   rows [K+K*L, K+2*K*L)  raw scales, same order          -> sigma = f(raw) + sigma_min
// With full covariance (full_covariance.hpp) K*L*(L-1)/2 rows of off-diagonal factors follow.
//
// All parameters live in one flat buffer described by a Layout: for layer i, W_i (out x in,
// row-major, like PyTorch's nn.Linear.weight) then b_i (out). Gradients and optimizer state use
// the same layout, so one allreduce, one clip and one optimizer loop cover the whole model.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mdn/names.hpp"

namespace mdn {

using Index = Eigen::Index;

enum class Activation { tanh, relu };
enum class SigmaMode { softplus, exp };
enum class Covariance { diagonal, full };

template <>
struct EnumNames<Activation> {
  static constexpr std::pair<Activation, const char*> table[] = {{Activation::tanh, "tanh"},
                                                                 {Activation::relu, "relu"}};
};
template <>
struct EnumNames<SigmaMode> {
  static constexpr std::pair<SigmaMode, const char*> table[] = {{SigmaMode::softplus, "softplus"},
                                                                {SigmaMode::exp, "exp"}};
};
template <>
struct EnumNames<Covariance> {
  static constexpr std::pair<Covariance, const char*> table[] = {{Covariance::diagonal, "diagonal"},
                                                                 {Covariance::full, "full"}};
};

/// Off-diagonal factors per component: L (L - 1) / 2 with full covariance, else 0.
constexpr int off_diagonals(int output_dim, Covariance covariance) {
  return covariance == Covariance::full ? output_dim * (output_dim - 1) / 2 : 0;
}
/// Head outputs per sample (O): K (1 + 2 L + off_diagonals).
constexpr int head_outputs(int components, int output_dim, Covariance covariance) {
  return components * (1 + 2 * output_dim + off_diagonals(output_dim, covariance));
}

struct ModelSpec {
  int input_dim = 1;         ///< D
  int output_dim = 1;        ///< L
  int components = 1;        ///< K
  std::vector<int> hidden;   ///< hidden layer widths
  Activation activation = Activation::tanh;
  SigmaMode sigma = SigmaMode::softplus;
  double sigma_min = 1e-3;   ///< floor of every sigma (normalised units when normalising)
  Covariance covariance = Covariance::diagonal;

  /// Off-diagonal factors per component: L (L - 1) / 2 with full covariance, else 0.
  int off_diagonals() const { return mdn::off_diagonals(output_dim, covariance); }
  int head_rows() const { return head_outputs(components, output_dim, covariance); }  ///< O
  int layers() const { return static_cast<int>(hidden.size()) + 1; }   ///< hidden + head
  int layer_in(int i) const { return i == 0 ? input_dim : hidden[static_cast<std::size_t>(i - 1)]; }
  int layer_out(int i) const {
    return i + 1 == layers() ? head_rows() : hidden[static_cast<std::size_t>(i)];
  }
  /// Throws mdn::Error (input) when a size is not positive or sigma_min is not.
  void validate() const;
};

/// One tensor in the flat buffer.
struct Slot {
  enum class Kind { weight, bias };
  std::string name;  ///< "layers/<i>/weight" or "layers/<i>/bias": its path under /model
  Index offset;      ///< first element in the buffer
  Index rows;        ///< out
  Index cols;        ///< in for a weight, 1 for a bias
  bool decays;       ///< weight decay applies (weights yes, biases no)
  int layer;
  Kind kind;
  Index size() const { return rows * cols; }
};

class Layout {
 public:
  explicit Layout(const ModelSpec& spec);

  const std::vector<Slot>& slots() const { return slots_; }
  Index size() const { return size_; }          ///< elements in the buffer
  int layers() const { return layers_; }
  const Slot& weight(int layer) const { return slots_[static_cast<std::size_t>(2 * layer)]; }
  const Slot& bias(int layer) const { return slots_[static_cast<std::size_t>(2 * layer + 1)]; }

 private:
  std::vector<Slot> slots_;
  Index size_ = 0;
  int layers_ = 0;
};

template <class S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;  ///< column-major
template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A layer's parameters (or gradients, or optimizer state) as views into a flat buffer.
template <class S>
struct LayerView {
  Eigen::Map<RowMat<S>> W;  ///< (out, in)
  Eigen::Map<Vec<S>> b;     ///< (out)
};
template <class S>
struct ConstLayerView {
  Eigen::Map<const RowMat<S>> W;
  Eigen::Map<const Vec<S>> b;
};

template <class S>
LayerView<S> layer_view(S* buffer, const Layout& layout, int i) {
  const Slot& w = layout.weight(i);
  const Slot& b = layout.bias(i);
  return {Eigen::Map<RowMat<S>>(buffer + w.offset, w.rows, w.cols),
          Eigen::Map<Vec<S>>(buffer + b.offset, b.rows)};
}
template <class S>
ConstLayerView<S> layer_view(const S* buffer, const Layout& layout, int i) {
  const Slot& w = layout.weight(i);
  const Slot& b = layout.bias(i);
  return {Eigen::Map<const RowMat<S>>(buffer + w.offset, w.rows, w.cols),
          Eigen::Map<const Vec<S>>(buffer + b.offset, b.rows)};
}

/// Deterministic initialisation from a seed, as PyTorch's nn.Linear default: every weight and
/// bias of layer i uniform in [-1/sqrt(in_i), 1/sqrt(in_i)]. Element j of slot s takes
/// rng::uniform(seed, rng::kInit, (s << 32) + j), so the values do not depend on how the buffer
/// is traversed.
template <class S>
void initialize(S* buffer, const Layout& layout, std::uint64_t seed);

}  // namespace mdn
