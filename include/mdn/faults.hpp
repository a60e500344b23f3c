// Test-only fault injection. The environment variable MDN_FAULT, which production runs never
// set, lists faults for the test battery to provoke what cannot be produced on demand otherwise:
//
//   MDN_FAULT="nonfinite@step=5@rank=1"   rank 1 puts a NaN in its first gradient of step 5
//   MDN_FAULT="overflow@step=3"           the exact reducer's quanta are 8 bits too fine at step 3
//   MDN_FAULT="slow@ms=50"                every step takes 50 ms longer (a long run, for signal tests)
//   MDN_FAULT="stall@step=5@rank=1"       rank 1 stops making progress at step 5 (for the watchdog)
//   MDN_FAULT="drift@step=6@rank=2"       rank 2's parameters change by 1e-3 after step 6
//   MDN_FAULT="crash@stage=2@step=8"      the process dies (SIGKILL) while writing the checkpoint
//                                         of step 8, at stage 1 after creating the temporary file,
//                                         2 half-way through the datasets, 3 before the fsync,
//                                         4 before the rename
//   MDN_FAULT="slow-checkpoint@ms=500"    every checkpoint write pauses half-way for 500 ms
//
// Several faults are separated by commas. Unknown names are an error, so a typo cannot make a
// fault test pass vacuously. `mdn train` reads the variable before anything else, and rank 0
// warns that faults are active: a stray MDN_FAULT in a production job shows at once. Nothing but
// `mdn train` reads it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "mdn/h5.hpp"

namespace mdn {

/// The faults of one run, asked at the points where each would strike: the training loop, the
/// exact reduction and the checkpoint writer hold a reference (none() for code that never
/// injects). Only `mdn train` builds one from the environment.
class Faults {
 public:
  /// No fault at all.
  static const Faults& none();
  /// Parses MDN_FAULT (unset: none). Throws mdn::Error (exit 2) for an unknown fault.
  static Faults from_environment();
  /// Parses a specification.
  static Faults parse(const std::string& spec);

  bool any() const { return !faults_.empty(); }
  /// The specification as given.
  const std::string& spec() const { return spec_; }

  /// Before step `step` computes on `rank`: a pause (slow) or a hang (stall).
  void before_step(std::int64_t step, int rank) const;
  /// Whether `rank` puts a NaN into its first gradient of `step` (nonfinite).
  bool poisons_gradient(std::int64_t step, int rank) const;
  /// Bits added to every quantum's shift of the exact reduction at `step` (overflow).
  int quantum_shift(std::int64_t step, int rank) const;
  /// Whether `rank`'s parameters drift after `step` (drift).
  bool drifts(std::int64_t step, int rank) const;
  /// At a stage of the write of the checkpoint of `step` (rank 0): death (crash) or a pause
  /// (slow-checkpoint).
  void at_checkpoint_stage(WriteStage stage, std::int64_t step) const;

 private:
  /// The fault named `name` applies at `step` on `rank` (a missing step or rank matches all).
  bool at(const std::string& name, std::int64_t step, int rank) const;
  /// Its integer parameter `key`, or `fallback`.
  std::int64_t param(const std::string& name, const std::string& key, std::int64_t fallback) const;

  std::string spec_;
  std::map<std::string, std::map<std::string, std::int64_t>> faults_;
};

}  // namespace mdn
