// The instruction-set levels a test runs the kernels at: every level built into the binary that
// this CPU supports (on an AVX-512 machine all three), as GoogleTest parameters.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mdn/cpu.hpp"

namespace mdn::test {

inline std::vector<CpuLevel> runnable_levels() {
  std::vector<CpuLevel> out;
  for (CpuLevel l : built_levels())
    if (cpu_supports(l)) out.push_back(l);
  return out;
}

/// A GoogleTest name for a level: "x86_64_v3".
inline std::string level_name(CpuLevel l) {
  std::string s = to_string(l);
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

inline std::string level_param_name(const testing::TestParamInfo<CpuLevel>& p) { return level_name(p.param); }

}  // namespace mdn::test
