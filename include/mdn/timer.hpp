// Wall-clock accounting for the step's phases (metrics.jsonl's t_compute, t_comm, t_io, t_other).
#pragma once

#include <chrono>

namespace mdn {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Adds the time of its scope to a total.
class ScopedTimer {
 public:
  explicit ScopedTimer(double& total) : total_(total), start_(Clock::now()) {}
  ~ScopedTimer() { total_ += seconds_since(start_); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  double& total_;
  Clock::time_point start_;
};

}  // namespace mdn
