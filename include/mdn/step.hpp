// One training step (README, "Training"): the rank's micro-batches forward and backward, one
// reduction of their gradients over all ranks, the finite check, the clip and the update.
//
// No files, no policies, no wall clock: what happens around a step (validation, checkpoints,
// stop requests, the non-finite policy, logging) is the run loop's (run_loop.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "mdn/comm.hpp"
#include "mdn/data.hpp"
#include "mdn/faults.hpp"
#include "mdn/network.hpp"
#include "mdn/optimizer.hpp"
#include "mdn/prepare.hpp"
#include "mdn/reducer.hpp"

namespace mdn {

struct StepOutcome {
  bool applied = false;   ///< false: a loss or gradient was non-finite on some rank; nothing changed
  double loss = 0;        ///< mean NLL of the step, in the data's units
  double grad_norm = 0;   ///< before clipping
  bool clipped = false;   ///< the norm or the value clip acted
  std::int64_t rows = 0;  ///< the step's rows over all ranks
  StepFlags flags;        ///< the ranks' requests, OR over ranks
};

/// Seconds spent in steps since the last reset, by kind (metrics.jsonl's t_compute, t_comm, t_io).
struct StepTimes {
  double compute = 0, comm = 0, io = 0;
};

class TrainStep {
 public:
  /// Takes this rank's training shard out of `p`. `faults` reach the reducer (the tests' injected
  /// non-finite gradients and overflows).
  TrainStep(Prepared& p, Comm& comm, const Faults& faults = Faults::none());

  /// Permutes and exchanges the rows of epoch `epoch` (0-based). Collective.
  void start_epoch(std::int64_t epoch);

  /// Trains on batch `batch` of the current epoch as step number `number` (1-based over the run)
  /// at learning rate `lr`, carrying this rank's `requests` to every rank. Collective; throws
  /// mdn::Error on an accumulator overflow (nothing applied).
  StepOutcome run(Index batch, std::int64_t number, double lr, StepFlags requests);

  Vec<float>& params() { return params_; }
  const Vec<float>& params() const { return params_; }
  Optimizer<float>& optimizer() { return optimizer_; }
  const Optimizer<float>& optimizer() const { return optimizer_; }
  /// The network (its workspace serves validation between steps).
  Network<float>& network() { return net_; }
  /// How the gradient sums travel between ranks.
  std::string reduction_route() const { return reducer_.route(); }
  StepTimes& times() { return times_; }

 private:
  const Prepared& p_;
  Comm& comm_;
  Layout layout_;
  Network<float> net_;
  Vec<float> params_;
  Vec<float> grad_;
  Optimizer<float> optimizer_;
  GradientReducer reducer_;
  TrainData data_;
  Mat<float> x_, y_;  // (D, m), (L, m): the micro-batch being computed
  StepTimes times_;
};

}  // namespace mdn
