// The mdn command line: parses argv and runs one command.
#pragma once

#include "mdn/comm.hpp"

namespace mdn::cli {

struct Outcome {
  int exit_code = 0;
  /// The error was seen by this rank only: the caller must MPI_Abort so that no rank waits in a
  /// collective forever.
  bool must_abort = false;
};

/// Runs the command on every rank of `world`. Never throws: every error is reported (once, by
/// rank 0, when all ranks know it) and becomes the exit code.
Outcome run(int argc, char** argv, Comm& world);

}  // namespace mdn::cli
