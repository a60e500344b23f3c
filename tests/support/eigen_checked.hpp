// Force-included (-include) in the checked build of the core that the unit tests link: every
// Eigen assertion is on, and failures (a shape mismatch, or a heap allocation while
// Eigen::internal::set_is_malloc_allowed(false) is in effect) throw instead of aborting, so a
// test can observe them.
#pragma once

#include <stdexcept>

#define EIGEN_RUNTIME_NO_MALLOC 1
#define eigen_assert(x) \
  do { \
    if (!static_cast<bool>(x)) throw std::logic_error("Eigen assertion failed: " #x); \
  } while (false)
