// What this binary is and what it was built with (`mdn --version`).
#pragma once

#include <string>

namespace mdn {

/// "0.1.0"
const char* version();
/// `git describe` of the source tree at build time ("unknown" outside a git checkout).
const char* git_describe();
/// Several lines: version, git revision, compiler, flags that change numerics (-march), and the
/// versions of MPI, HDF5 (parallel or not), Eigen and yaml-cpp. Exact-mode runs are
/// bit-identical only between binaries whose report matches.
std::string build_report();

}  // namespace mdn
