// The training run (README, "Training"): steps until the end, with the run's policies around
// them — the non-finite policy, validation and the best model, the checkpoint schedule, stop
// requests, the replica check, logging and metrics — each in one function.
//
// Records and checkpoints leave through two small interfaces, so that tests can run the loop in
// one process and look at what it decided: MetricsSink (metrics.jsonl) and CheckpointSink (files
// in run.dir/checkpoints).
#pragma once

#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mdn/checkpoint.hpp"
#include "mdn/comm.hpp"
#include "mdn/faults.hpp"
#include "mdn/prepare.hpp"
#include "mdn/step.hpp"
#include "mdn/timer.hpp"

namespace mdn {

/// Where the run's records go (rank 0 only: the loop writes nothing elsewhere).
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void write(const nlohmann::json& record) = 0;
};

/// metrics.jsonl in the run directory, appended to and flushed record by record.
class MetricsFile final : public MetricsSink {
 public:
  explicit MetricsFile(const std::string& run_dir);
  void write(const nlohmann::json& record) override;

 private:
  std::ofstream out_;
  std::string path_;
};

/// Where the run's checkpoints go (called on rank 0 only, inside a collective settlement: an
/// exception becomes the same error on every rank).
class CheckpointSink {
 public:
  virtual ~CheckpointSink() = default;
  /// Saves the checkpoint of step ck.step; returns where it went.
  virtual std::string save_step(const Checkpoint& ck) = 0;
  /// Saves the best model so far; returns where it went.
  virtual std::string save_best(const Checkpoint& ck) = 0;
  /// Where the checkpoint of `step` is (or would be), for messages.
  virtual std::string step_path(std::int64_t step) const = 0;
};

/// Files in run.dir/checkpoints: step-NNNNNNNN.h5 (the newest keep_last kept) and best.h5,
/// each written atomically.
class CheckpointFiles final : public CheckpointSink {
 public:
  CheckpointFiles(const std::string& run_dir, std::int64_t keep_last, const Faults& faults = Faults::none());
  std::string save_step(const Checkpoint& ck) override;
  std::string save_best(const Checkpoint& ck) override;
  std::string step_path(std::int64_t step) const override;

 private:
  std::string dir_;
  std::size_t keep_last_;
  const Faults& faults_;
};

/// How a run ended.
enum class RunEnd { finished, stopped_by_signal };

class RunLoop {
 public:
  /// `p` holds the validated config and this rank's data; `resume` the state to continue from.
  /// `metrics` is used on rank 0 only. `faults`: what the fault tests make the run do.
  RunLoop(Prepared& p, Comm& comm, const Checkpoint* resume, MetricsSink& metrics, CheckpointSink& checkpoints,
          const Faults& faults = Faults::none());

  /// Trains to the end (or until a stop request); writes records, progress and checkpoints.
  /// Collective.
  RunEnd run();

  /// Steps completed (the checkpoint of step s holds the parameters after s steps).
  std::int64_t step() const { return step_; }
  std::int64_t total_steps() const { return total_steps_; }
  const Vec<float>& params() const { return step_fn_.params(); }
  std::string reduction_route() const { return step_fn_.reduction_route(); }

 private:
  void on_nonfinite();                ///< train.nonfinite: stop (save, throw) or skip (record)
  void validate_and_keep_best();      ///< validation NLL; the best model when it improves
  bool checkpoint_due(bool epoch_done, const StepFlags& flags) const;  ///< the schedule
  void checkpoint_unless_saved();     ///< the step checkpoint, once per step
  RunEnd stop_by_signal();            ///< checkpoint, then end with exit 75
  void check_replicas();
  double validate();
  Checkpoint snapshot();
  void save_best();
  void log_train(const StepOutcome& last, double lr, bool force);
  void write_summary();
  void record(const nlohmann::json& r);

  Prepared& p_;
  const Config& c_;
  Comm& comm_;
  MetricsSink& metrics_;
  CheckpointSink& checkpoints_;
  const Faults& faults_;
  TrainStep step_fn_;

  std::int64_t step_ = 0;   // steps completed; the step being computed is step_ + 1
  std::int64_t epoch_ = 0;  // epochs completed
  std::int64_t samples_seen_ = 0;
  double best_valid_ = std::numeric_limits<double>::quiet_NaN();
  std::int64_t total_steps_ = 0;
  std::int64_t last_checkpoint_step_ = -1;
  std::int64_t skipped_ = 0;
  std::vector<std::uint64_t> replica_hashes_;  // one per rank

  // Since the last train record.
  struct Interval {
    double loss_sum = 0;
    std::int64_t steps = 0;
    std::int64_t samples = 0;
    double t_other = 0;  // validation and checkpoints: not part of the training rate
    Clock::time_point start;
  } interval_;
  Clock::time_point run_start_;
  double epoch_start_seconds_ = 0;  // in TrainData::start_epoch, this run
  std::int64_t epoch_starts_ = 0;
  Clock::time_point last_checkpoint_time_;
  std::int64_t first_step_ = 0;
  std::int64_t first_samples_ = 0;
};

}  // namespace mdn
