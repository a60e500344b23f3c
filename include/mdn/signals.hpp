// Stop requests from signals (SLURM sends one before a job's time limit).
//
// The handlers only set a flag. The trainer passes the flag into the step's collective, so every
// rank stops at the same step boundary even when only one rank got the signal; then rank 0
// writes a checkpoint and every rank exits with code 75.
#pragma once

#include <string>
#include <vector>

namespace mdn {

/// Installs handlers for the named signals ("USR1", "USR2", "TERM").
void install_stop_handlers(const std::vector<std::string>& signals);

/// Keeps the handlers of `signals` and restores the default action of the others among USR1,
/// USR2 and TERM (the config's run.signals).
void keep_stop_handlers(const std::vector<std::string>& signals);

/// True once one of the handled signals arrived (async-signal-safe flag).
bool stop_signal_received();

/// The signal that arrived, or 0.
int stop_signal_number();

/// Forgets a stop request that has been acted on, so that the same process can train again.
void forget_stop_signal();

}  // namespace mdn
