// Learning-rate schedules. Steps are counted from 0 (the first update is step 0).
//
//   warmup (optional, in front of any schedule): lr(t) = base * (t + 1) / warmup  for t < warmup
//   after it, with s = t - warmup and H = total - warmup (the post-warmup horizon):
//   constant: lr = base
//   step:     lr = base * gamma^floor(s / step_size)
//   cosine:   lr = min_lr + (base - min_lr) * (1 + cos(pi * min(s, H) / H)) / 2
// The cosine horizon is the run's total step count: changing the epoch count on resume changes it.
#pragma once

#include <cstdint>
#include <utility>

#include "mdn/names.hpp"

namespace mdn {

enum class ScheduleKind { constant, cosine, step };

template <>
struct EnumNames<ScheduleKind> {
  static constexpr std::pair<ScheduleKind, const char*> table[] = {
      {ScheduleKind::constant, "constant"}, {ScheduleKind::cosine, "cosine"}, {ScheduleKind::step, "step"}};
};

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::constant;
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;           ///< cosine
  std::int64_t step_size = 1000; ///< step
  double gamma = 0.1;            ///< step
};

/// The learning rate of step t (0-based) of a run of total_steps steps.
double learning_rate(const ScheduleSpec& s, double base_lr, std::int64_t t, std::int64_t total_steps);

}  // namespace mdn
