// `mdn train` (README, "Training"): checks, run directory, resume, then the run loop
// (run_loop.hpp), whose steps are step.hpp's.
#pragma once

#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/faults.hpp"

namespace mdn {

/// The `mdn train` command: checks, run directory, resume, training. Returns the exit code.
int train_command(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm,
                  const Faults& faults = Faults::none());

}  // namespace mdn
