// `mdn train`: the training loop (README, "Training").
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mdn/checkpoint.hpp"
#include "mdn/comm.hpp"
#include "mdn/data.hpp"
#include "mdn/network.hpp"
#include "mdn/optimizer.hpp"
#include "mdn/prepare.hpp"
#include "mdn/reducer.hpp"

namespace mdn {

/// How a run ended.
enum class RunEnd { finished, stopped_by_signal };

class Trainer {
 public:
  /// `p` holds the validated config and this rank's data; `resume` the state to continue from.
  /// `faults`: what the fault tests make the run do (none by default).
  Trainer(Prepared& p, Comm& comm, const Checkpoint* resume, const Faults& faults = Faults::none());

  /// Trains to the end (or until a signal); writes metrics, progress, checkpoints. Collective.
  RunEnd run();

  // State, for tests and the command's summary.
  std::int64_t step() const { return step_; }
  /// How the step's gradient sums travel between ranks.
  std::string reduction_route() const { return reducer_.route(); }
  std::int64_t total_steps() const { return total_steps_; }
  const Vec<float>& params() const { return params_; }

  /// Appends a JSON record to metrics.jsonl (rank 0; a no-op elsewhere).
  void write_metrics(const std::string& json_line);

 private:
  struct StepOutcome {
    bool applied = false;  ///< false: a non-finite step skipped on every rank
    double loss = 0;       ///< mean NLL of the step, data units
    double grad_norm = 0;  ///< before clipping
    double lr = 0;
    std::int64_t rows = 0;
    StepFlags flags;
  };

  StepOutcome train_step(Index batch);
  // The run's policies, each in one place.
  void on_nonfinite();               ///< train.nonfinite: stop (save, throw) or skip (record)
  void validate_and_keep_best();     ///< validation NLL; best.h5 when it improves
  bool checkpoint_due(bool epoch_done, const StepFlags& flags) const;  ///< the schedule
  void checkpoint_unless_saved();    ///< the step checkpoint, once per step
  RunEnd stop_by_signal();           ///< checkpoint, then end with exit 75
  void check_replicas();
  double validate();
  Checkpoint snapshot() const;
  void save_step_checkpoint();
  void save_best();
  void log_train(const StepOutcome& last, bool force);
  void write_summary();

  Prepared& p_;
  const Config& c_;
  Comm& comm_;
  const Faults& faults_;
  Layout layout_;
  Network<float> net_;
  Vec<float> params_;
  Vec<float> grad_;
  Optimizer<float> optimizer_;
  GradientReducer reducer_;
  TrainData data_;
  Mat<float> x_, y_;  // (D, m), (L, m): the micro-batch being computed

  std::int64_t step_ = 0;         // global batches consumed
  std::int64_t epoch_ = 0;        // completed epochs
  std::int64_t samples_seen_ = 0;
  double best_valid_ = std::numeric_limits<double>::quiet_NaN();
  std::int64_t total_steps_ = 0;
  std::int64_t last_checkpoint_step_ = -1;
  std::int64_t skipped_ = 0;
  bool clipped_ever_ = false;
  std::vector<std::uint64_t> replica_hashes_;  // one per rank

  // Interval since the last train record.
  struct Interval {
    double loss_sum = 0;
    std::int64_t steps = 0;
    std::int64_t samples = 0;
    double t_compute = 0, t_comm = 0, t_io = 0;
    double t_other = 0;  // validation and checkpoints: not part of the training rate
    std::chrono::steady_clock::time_point start;
  } interval_;
  std::chrono::steady_clock::time_point run_start_;
  std::chrono::steady_clock::time_point last_checkpoint_time_;
  std::int64_t first_step_ = 0;
  std::int64_t first_samples_ = 0;
  std::unique_ptr<std::ofstream> metrics_;
};

/// The `mdn train` command: checks, run directory, resume, training. Returns the exit code.
int train_command(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm,
                  const Faults& faults = Faults::none());

}  // namespace mdn
