#include "mdn/optimizer.hpp"

#include <cmath>

namespace mdn {

const char* to_string(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::sgd: return "sgd";
    case OptimizerKind::adam: return "adam";
    case OptimizerKind::adamw: return "adamw";
  }
  return "?";
}

template <class S>
Optimizer<S>::Optimizer(const OptimizerSpec& spec, const Layout& layout)
    : spec_(spec), layout_(&layout) {
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
void Optimizer<S>::step(S* params, const S* grad, double lr) {
  ++steps_;
  const double wd = spec_.weight_decay;
  for (const Slot& slot : layout_->slots()) {
    const Index o = slot.offset;
    const Index n = slot.size();
    Eigen::Map<Vec<S>> p(params + o, n);
    Eigen::Map<const Vec<S>> g0(grad + o, n);
    const bool decay = slot.decays && wd != 0.0;

    if (spec_.kind == OptimizerKind::sgd) {
      const S lr_s = static_cast<S>(lr);
      const S mu = static_cast<S>(spec_.momentum);
      // g = g0 + wd p, formed on the fly.
      const auto g = (g0.array() + static_cast<S>(decay ? wd : 0.0) * p.array());
      if (m_.size() == 0) {
        p.array() -= lr_s * g;
        continue;
      }
      auto v = m_.segment(o, n).array();
      if (steps_ == 1) {
        v = g;
      } else {
        v = mu * v + g;
      }
      if (spec_.nesterov) {
        p.array() -= lr_s * (g + mu * v);
      } else {
        p.array() -= lr_s * v;
      }
      continue;
    }

    // adam / adamw
    const double b1 = spec_.beta1;
    const double b2 = spec_.beta2;
    const double t = static_cast<double>(steps_);
    const S step_size = static_cast<S>(lr / (1.0 - std::pow(b1, t)));
    const S bias2_sqrt = static_cast<S>(std::sqrt(1.0 - std::pow(b2, t)));
    const S eps = static_cast<S>(spec_.eps);
    if (decay && spec_.kind == OptimizerKind::adamw) p *= static_cast<S>(1.0 - lr * wd);
    const S l2 = static_cast<S>(decay && spec_.kind == OptimizerKind::adam ? wd : 0.0);
    const auto g = (g0.array() + l2 * p.array());
    auto m = m_.segment(o, n).array();
    auto v = v_.segment(o, n).array();
    m = static_cast<S>(b1) * m + static_cast<S>(1.0 - b1) * g;
    v = static_cast<S>(b2) * v + static_cast<S>(1.0 - b2) * g.square();
    p.array() -= step_size * m / (v.sqrt() / bias2_sqrt + eps);
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace mdn
