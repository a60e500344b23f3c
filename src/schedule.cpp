#include "mdn/schedule.hpp"

#include <algorithm>
#include <cmath>

#include "mdn/detmath.hpp"

namespace mdn {


double learning_rate(const ScheduleSpec& s, double base_lr, std::int64_t t, std::int64_t total_steps) {
  if (t < s.warmup_steps)
    return base_lr * static_cast<double>(t + 1) / static_cast<double>(s.warmup_steps);
  const std::int64_t since = t - s.warmup_steps;
  switch (s.kind) {
    case ScheduleKind::constant:
      return base_lr;
    case ScheduleKind::step:
      return base_lr * det::pow(s.gamma, since / s.step_size);
    case ScheduleKind::cosine: {
      const std::int64_t horizon = std::max<std::int64_t>(1, total_steps - s.warmup_steps);
      const double frac = static_cast<double>(std::min(since, horizon)) / static_cast<double>(horizon);
      return s.min_lr + (base_lr - s.min_lr) * 0.5 * (1.0 + det::cos(M_PI * frac));
    }
  }
  return base_lr;
}

}  // namespace mdn
