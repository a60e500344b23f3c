// One instruction-set level per job (cpu.hpp): the ranks agree on it collectively.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/cpu.hpp"

namespace mdn {

struct CpuChoice {
  CpuLevel level = CpuLevel::x86_64;   ///< the level every rank runs
  CpuLevel common = CpuLevel::x86_64;  ///< the best built level that every rank's CPU supports
  /// Why this level: "run.cpu" (forced), "checkpoint" (auto, resuming: the checkpoint's level),
  /// "auto" (the best level all ranks support).
  std::string reason;
  /// Resuming with auto from a checkpoint of a level some rank cannot run (or of no recorded
  /// level): that level, or "unknown". Empty otherwise.
  std::string replaced;
  /// One line for people: "x86-64-v3 (auto: the best level all 4 ranks support)".
  std::string describe(int ranks) const;
};

/// Collective. `requested` is run.cpu (none: auto), `what` names it for messages (with the
/// config file's line, or "--cpu");
/// `previous` the level of the checkpoint a run resumes from (or a model was trained with), if
/// known. A forced level that is not built, or that some rank's CPU lacks, is an mdn::Error
/// (exit 2) on every rank, naming the first such rank, its host and CPU.
CpuChoice choose_cpu_level(std::optional<CpuLevel> requested, const std::string& what,
                           std::optional<CpuLevel> previous, bool resuming, Comm& comm);

/// "x86-64, x86-64-v3, x86-64-v4": the levels built into this binary.
std::string built_level_list();

}  // namespace mdn
