#include "mdn/clip.hpp"

#include <algorithm>
#include <cmath>

namespace mdn {

template <class S>
double l2_norm(const S* g, Index n) {
  // Blocks of 256 summed in S (short, vectorised sums), the blocks in double: a long sum stays
  // accurate and the pass costs little (a float-to-double cast per element does not vectorise well).
  constexpr Index kBlock = 256;
  double sum = 0;
  for (Index i = 0; i < n; i += kBlock)
    sum += static_cast<double>(Eigen::Map<const Vec<S>>(g + i, std::min(kBlock, n - i)).squaredNorm());
  return std::sqrt(sum);
}

template <class S>
ClipResult clip(S* g, Index n, const ClipSpec& spec) {
  Eigen::Map<Vec<S>> v(g, n);
  ClipResult r;
  r.norm = l2_norm(g, n);
  double norm = r.norm;
  if (spec.value) {
    const S c = static_cast<S>(*spec.value);
    r.value_clipped = (v.array().abs() > c).any();
    if (r.value_clipped) {
      v = v.array().min(c).max(-c).matrix();
      norm = l2_norm(g, n);
    }
  }
  if (spec.global_norm) {
    const double coef = *spec.global_norm / (norm + 1e-6);
    if (coef < 1.0) {
      v *= static_cast<S>(coef);
      r.norm_clipped = true;
    }
  }
  return r;
}

template double l2_norm<float>(const float*, Index);
template double l2_norm<double>(const double*, Index);
template ClipResult clip<float>(float*, Index, const ClipSpec&);
template ClipResult clip<double>(double*, Index, const ClipSpec&);

}  // namespace mdn
