#include "mdn/clip.hpp"

#include <cmath>

#include "mdn/kernels.hpp"

namespace mdn {

template <class S>
double l2_norm(CpuLevel level, const S* g, Index n) {
  return std::sqrt(kernels<S>(level).sum_squares(g, n));
}

template <class S>
ClipResult clip_by_value(CpuLevel level, S* g, Index n, const ClipSpec& spec, double norm) {
  const Kernels<S>& k = kernels<S>(level);
  ClipResult r;
  r.norm = norm;
  if (spec.value) {
    r.value_clipped = k.clamp(g, n, static_cast<S>(*spec.value));
    if (r.value_clipped) norm = std::sqrt(k.sum_squares(g, n));
  }
  if (spec.global_norm) {
    const double coef = *spec.global_norm / (norm + 1e-6);
    if (coef < 1.0) {
      r.scale = coef;
      r.norm_clipped = true;
    }
  }
  return r;
}

template <class S>
ClipResult clip(CpuLevel level, S* g, Index n, const ClipSpec& spec) {
  const ClipResult r = clip_by_value(level, g, n, spec, l2_norm(level, g, n));
  if (r.norm_clipped) kernels<S>(level).scale(g, n, static_cast<S>(r.scale));
  return r;
}

template double l2_norm<float>(CpuLevel, const float*, Index);
template double l2_norm<double>(CpuLevel, const double*, Index);
template ClipResult clip<float>(CpuLevel, float*, Index, const ClipSpec&);
template ClipResult clip<double>(CpuLevel, double*, Index, const ClipSpec&);
template ClipResult clip_by_value<float>(CpuLevel, float*, Index, const ClipSpec&, double);
template ClipResult clip_by_value<double>(CpuLevel, double*, Index, const ClipSpec&, double);

}  // namespace mdn
