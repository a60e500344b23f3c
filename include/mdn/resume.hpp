// Resuming a run (README, "Resuming"): which checkpoint `checkpoint.resume` selects in the run
// directory, whether this config and data may continue from it, and what the run then takes
// from it. `mdn check` reports the decision, `mdn train` acts on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mdn/checkpoint.hpp"
#include "mdn/comm.hpp"
#include "mdn/prepare.hpp"

namespace mdn {

struct ResumeDecision {
  std::optional<Checkpoint> checkpoint;  ///< the state to continue from (none: a fresh run)
  std::string path;                      ///< its file
  std::vector<std::string> skipped;      ///< corrupt checkpoints passed over, with the reason
  nlohmann::json changed = nlohmann::json::object();  ///< each config key that differs: {from, to}
  std::int64_t total_steps = 0;          ///< the run's last step under this config
  bool finished = false;                 ///< the checkpoint is at or past the last step

  /// What reading the data and choosing the level take from the checkpoint (nothing for a
  /// fresh run).
  Continuation continuation(const Config& c) const;
};

/// Decides and validates the resume of `prep`'s run (collective; reads checkpoints, writes
/// nothing). Errors (incompatible checkpoint, `never` with checkpoints present, no valid
/// checkpoint) are mdn::Error on every rank; rank 0 warns of each corrupt checkpoint passed over.
ResumeDecision decide_resume(const Prepared& prep, Comm& comm);

/// One line for `mdn check`: a fresh run, or where it resumes, or that it is finished.
std::string describe(const ResumeDecision& d);

}  // namespace mdn
