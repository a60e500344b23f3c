// Gradient clipping (README, "How the model works"): by value, then by global L2 norm.
#pragma once

#include <optional>

#include "mdn/cpu.hpp"
#include "mdn/model.hpp"

namespace mdn {

struct ClipSpec {
  std::optional<double> value;        ///< clamp every element to [-value, value]
  std::optional<double> global_norm;  ///< scale by min(1, max_norm / (norm + 1e-6))
};

struct ClipResult {
  double norm = 0.0;            ///< L2 norm of the gradient before any clipping (the logged one)
  bool value_clipped = false;   ///< some element was clamped
  bool norm_clipped = false;    ///< the gradient was scaled down
  double scale = 1.0;           ///< the norm clip's factor (applied by clip(), left to the caller by clip_by_value())
};

/// L2 norm of n elements, accumulated in double, with the kernels of `level`.
template <class S>
double l2_norm(CpuLevel level, const S* g, Index n);

/// Clips the n-element gradient g in place, with the kernels of `level`.
template <class S>
ClipResult clip(CpuLevel level, S* g, Index n, const ClipSpec& spec);

/// clip() for a gradient whose L2 norm is known (norm, before clipping): clamps by value in
/// place, and returns the norm clip's factor in `scale` without applying it; the optimizer
/// multiplies the gradient by it as it reads it (Optimizer::step), saving a pass over the
/// gradient. The same result as clip() followed by the update. g is read and written only with a
/// value clip (it may be null without one).
template <class S>
ClipResult clip_by_value(CpuLevel level, S* g, Index n, const ClipSpec& spec, double norm);

}  // namespace mdn
