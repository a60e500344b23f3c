#include "mdn/optimizer.hpp"

#include <cmath>

#include "mdn/detmath.hpp"
#include "mdn/kernels.hpp"

namespace mdn {


template <class S>
Optimizer<S>::Optimizer(const OptimizerSpec& spec, const Layout& layout, CpuLevel level)
    : spec_(spec), layout_(&layout), level_(level) {
  const Index n = layout.size();
  if (spec.kind == OptimizerKind::sgd) {
    if (spec.momentum != 0.0) m_.setZero(n);
  } else {
    m_.setZero(n);
    v_.setZero(n);
  }
}

template <class S>
std::vector<typename Optimizer<S>::State> Optimizer<S>::state() {
  if (spec_.kind == OptimizerKind::sgd) {
    if (m_.size() == 0) return {};
    return {{"momentum", &m_}};
  }
  return {{"exp_avg", &m_}, {"exp_avg_sq", &v_}};
}

template <class S>
void Optimizer<S>::step(S* params, const S* grad, double lr, double grad_scale) {
  ++steps_;
  const Kernels<S>& k = kernels<S>(level_);
  const double wd = spec_.weight_decay;
  if (spec_.kind == OptimizerKind::sgd) {
    SgdUpdate<S> u{static_cast<S>(grad_scale), static_cast<S>(lr), static_cast<S>(spec_.momentum), S(0), steps_ == 1,
                   spec_.nesterov};
    for (const Slot& slot : layout_->slots()) {
      u.decay = static_cast<S>(slot.decays ? wd : 0.0);
      k.sgd(params + slot.offset, grad + slot.offset, m_.size() == 0 ? nullptr : m_.data() + slot.offset, slot.size(), u);
    }
    return;
  }
  const double b1 = spec_.beta1;
  const double b2 = spec_.beta2;
  AdamUpdate<S> u{};
  u.grad_scale = static_cast<S>(grad_scale);
  u.step_size = static_cast<S>(lr / (1.0 - det::pow(b1, steps_)));
  u.bias2_sqrt = static_cast<S>(std::sqrt(1.0 - det::pow(b2, steps_)));
  u.beta1 = static_cast<S>(b1);
  u.one_minus_beta1 = static_cast<S>(1.0 - b1);
  u.beta2 = static_cast<S>(b2);
  u.one_minus_beta2 = static_cast<S>(1.0 - b2);
  u.eps = static_cast<S>(spec_.eps);
  for (const Slot& slot : layout_->slots()) {
    const bool decay = slot.decays && wd != 0.0;
    u.l2 = static_cast<S>(decay && spec_.kind == OptimizerKind::adam ? wd : 0.0);
    u.shrink = static_cast<S>(decay && spec_.kind == OptimizerKind::adamw ? 1.0 - lr * wd : 1.0);
    k.adam(params + slot.offset, grad + slot.offset, m_.data() + slot.offset, v_.data() + slot.offset, slot.size(), u);
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace mdn
