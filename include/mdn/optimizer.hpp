// Optimizers over the flat parameter buffer, with PyTorch's (torch.optim) conventions.
//
// With g the (clipped) gradient, lr the step's learning rate, wd the weight decay (applied to
// slots whose layout entry says `decays`, i.e. weights, not biases), t the optimizer's step
// count after increment:
//   sgd:   g += wd p;  v = mu v + g (v = g on the first step);
//          p -= lr (g + mu v) with Nesterov, p -= lr v without (mu = 0: p -= lr g)
//   adam:  g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//          p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
//   adamw: p *= 1 - lr wd (decoupled), then adam without the wd term
// State buffers share the parameters' layout. The factors (lr / (1 - b1^t), ...) are computed
// once per step in double (det::pow: the same on every CPU) and rounded once to S; the
// element-wise updates are kernels of the chosen level.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mdn/cpu.hpp"
#include "mdn/model.hpp"
#include "mdn/names.hpp"

namespace mdn {

enum class OptimizerKind { sgd, adam, adamw };

template <>
struct EnumNames<OptimizerKind> {
  static constexpr std::pair<OptimizerKind, const char*> table[] = {
      {OptimizerKind::adam, "adam"}, {OptimizerKind::adamw, "adamw"}, {OptimizerKind::sgd, "sgd"}};
};

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::adam;
  double momentum = 0.0;  ///< sgd
  bool nesterov = false;  ///< sgd
  double beta1 = 0.9;     ///< adam, adamw
  double beta2 = 0.999;   ///< adam, adamw
  double eps = 1e-8;      ///< adam, adamw
  double weight_decay = 0.0;
};

template <class S>
class Optimizer {
 public:
  /// The updates run in the kernels of `level` (kernels.hpp).
  Optimizer(const OptimizerSpec& spec, const Layout& layout, CpuLevel level);

  /// One update of params (layout().size() elements) with gradient grad_scale * grad (rounded
  /// to S element by element; grad_scale 1: grad itself) and learning rate lr.
  void step(S* params, const S* grad, double lr, double grad_scale = 1.0);

  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t t) { steps_ = t; }
  const OptimizerSpec& spec() const { return spec_; }

  /// Named state buffers (checkpointed): "momentum" for sgd with momentum; "exp_avg" and
  /// "exp_avg_sq" for adam and adamw. Each has the parameters' layout.
  struct State {
    std::string name;
    Vec<S>* buffer;
  };
  std::vector<State> state();

 private:
  OptimizerSpec spec_;
  const Layout* layout_;
  CpuLevel level_;
  std::int64_t steps_ = 0;
  Vec<S> m_;  // momentum / exp_avg
  Vec<S> v_;  // exp_avg_sq
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace mdn
