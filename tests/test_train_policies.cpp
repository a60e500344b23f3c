// The run loop's policies, run in one process with sinks that keep what it decided: the
// non-finite policy (skip, stop), an accumulator overflow, the checkpoint schedule (steps,
// epochs, seconds, a stop signal, the end), the best model, and the resume decisions.
//
// Built twice from this source: test_train_policies (the single-process communicator, label
// unit) and test_train_policies_mpi (MPI_COMM_WORLD under mpiexec -n 1, 2, 3, label mpi), where
// faults strike on the last rank and the requests of one rank must reach every rank. Process
// tests (test_train_cli, test_signals_cli, test_faults_cli) keep what needs a process.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mdn/checkpoint.hpp"
#include "mdn/comm.hpp"
#include "mdn/error.hpp"
#include "mdn/faults.hpp"
#include "mdn/prepare.hpp"
#include "mdn/resume.hpp"
#include "mdn/run_loop.hpp"
#include "mdn/signals.hpp"
#include "support/mpi_temp_dir.hpp"
#include "support/run_sinks.hpp"
#include "support/train_fixture.hpp"

#ifdef MDN_TEST_MPI
#include <mpi.h>

#include "mdn/mpi_comm.hpp"
#endif

namespace mdn::test {
namespace {

Comm& test_comm() {
#ifdef MDN_TEST_MPI
  static MpiComm comm(MPI_COMM_WORLD);
#else
  static SelfComm comm;
#endif
  return comm;
}

/// The rank that faults and requests come from: the last one.
int last_rank() { return test_comm().size() - 1; }
std::string on_last_rank() { return "@rank=" + std::to_string(last_rank()); }

struct Trained {
  RunEnd end = RunEnd::finished;
  std::int64_t step = 0;
  Vec<float> params;
  RecordedMetrics metrics;
  RecordedCheckpoints checkpoints;
};

class Policies : public testing::Test {
 protected:
  void SetUp() override {
    // 400 rows in batches of 64: 7 steps per epoch, the last of 16 rows.
    if (root()) {
      write_data(dir_ / "train.h5", 400, 5);
      write_data(dir_ / "valid.h5", 200, 6);
    }
    test_comm().barrier();
  }

  /// The config of run `name` (with `sets` on top).
  Prepared prepared(const std::string& name, const std::vector<std::string>& sets) {
    const std::string config = dir_ / (name + ".yaml");
    if (root())
      std::ofstream(config) << "run: {dir: " << (dir_ / name) << ", seed: 4}\n"
                            << "data: {train: " << (dir_ / "train.h5") << "}\n"
                            << "model: {hidden: [8], components: 2}\n"
                            << "train: {max_steps: 3, batch_size: 64, micro_batch: 32}\n"
                            << "checkpoint: {every_epochs: null, keep_best: false}\n"
                            << "log: {every_steps: 1}\n";
    return prepare(config, sets, test_comm());  // read on rank 0
  }

  /// Trains run `name` with `sets`, from `resume` (or fresh), with `faults`, saving checkpoints
  /// through `checkpoints`; what the run did is in `r` also when it throws.
  void run(Trained& r, const std::string& name, const std::vector<std::string>& sets, const Faults& faults,
           const Checkpoint* resume, CheckpointSink& checkpoints) {
    Comm& comm = test_comm();
    Prepared p = prepared(name, sets);
    ResumeDecision plan;  // what `mdn train` would take from the checkpoint
    if (resume != nullptr) plan.checkpoint = *resume;
    read_data(p, plan.continuation(p.config), comm);
    RunLoop loop(p, comm, resume, r.metrics, checkpoints, faults);
    r.end = loop.run();
    r.step = loop.step();
    r.params = loop.params();
  }

  /// The same, keeping the checkpoints in memory.
  Trained train(const std::string& name, const std::vector<std::string>& sets, const Faults& faults = Faults::none(),
                const Checkpoint* resume = nullptr) {
    Trained r;
    run(r, name, sets, faults, resume, r.checkpoints);
    return r;
  }

  /// The same, into real files in its run directory.
  void train_to_files(const std::string& name, const std::vector<std::string>& sets) {
    if (root()) std::filesystem::create_directories(checkpoint_dir(dir_ / name));
    Trained r;
    CheckpointFiles files(dir_ / name, 3);  // checkpoint.keep_last as these configs leave it
    run(r, name, sets, Faults::none(), nullptr, files);
    EXPECT_EQ(r.end, RunEnd::finished);
  }

  std::string checkpoint_file(const std::string& name, std::int64_t step) {
    return checkpoint_name(checkpoint_dir(dir_ / name), step);
  }

  static bool root() { return test_comm().is_root(); }

  // One directory for every rank, written by rank 0.
  SharedTempDir dir_{test_comm()};
};

// ---- the non-finite policy and the overflow -------------------------------------------------------

TEST_F(Policies, ASkippedNonFiniteStepLeavesTheParametersOfTheStepBefore) {
  const std::vector<std::string> skip = {"train.nonfinite=skip"};
  const Trained two = train("two", {"train.nonfinite=skip", "train.max_steps=2"});
  const Trained three = train("three", skip);
  const Trained skipped = train("skipped", skip, Faults::parse("nonfinite@step=3" + on_last_rank()));
  EXPECT_NE(three.params, two.params) << "the third step changes the parameters";
  EXPECT_EQ(skipped.params, two.params) << "a skipped step changes nothing, the optimizer's state included";
  EXPECT_EQ(skipped.step, 3);
  if (!root()) return;
  const auto nonfinite = skipped.metrics.of("nonfinite");
  ASSERT_EQ(nonfinite.size(), 1u);
  EXPECT_EQ(nonfinite[0], (nlohmann::json{{"kind", "nonfinite"}, {"step", 3}, {"action", "skip"}}));
  EXPECT_TRUE(three.metrics.of("nonfinite").empty());
}

TEST_F(Policies, ANonFiniteStepStopsTheRunWithTheLastGoodStateSaved) {
  const Trained two = train("two", {"train.max_steps=2"});
  Trained stopped;
  try {
    run(stopped, "stopped", {"train.max_steps=5"}, Faults::parse("nonfinite@step=3" + on_last_rank()), nullptr,
        stopped.checkpoints);
    ADD_FAILURE() << "the run did not stop";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("step 3: non-finite loss or gradient"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the last good state is in 'step 2'"), std::string::npos) << e.what();
  }
  if (!root()) return;
  ASSERT_EQ(stopped.checkpoints.step_numbers(), (std::vector<std::int64_t>{2}));
  EXPECT_EQ(stopped.checkpoints.steps[0].params, two.params);
}

TEST_F(Policies, AnAccumulatorOverflowIsAnErrorNamingTheStepAndAppliesNothing) {
  Trained r;
  try {
    // The maxima are global: every rank overflows.
    run(r, "overflow", {"train.max_steps=4"}, Faults::parse("overflow@step=2"), nullptr, r.checkpoints);
    ADD_FAILURE() << "the overflow was not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("accumulator overflow in 'layers/"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at step 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(r.checkpoints.steps.empty());
}

// ---- the checkpoint schedule ----------------------------------------------------------------------

TEST_F(Policies, CheckpointsEveryNStepsAndAtTheEnd) {
  const Trained r = train("steps", {"train.max_steps=10", "checkpoint.every_steps=3"});
  if (!root()) return;
  EXPECT_EQ(r.checkpoints.step_numbers(), (std::vector<std::int64_t>{3, 6, 9, 10}));
  for (const Checkpoint& ck : r.checkpoints.steps) EXPECT_EQ(ck.epoch, ck.step / 7) << "step " << ck.step;
  EXPECT_EQ(r.checkpoints.steps.back().params, r.params);
  EXPECT_EQ(r.metrics.of("checkpoint").size(), 4u);
}

TEST_F(Policies, CheckpointsEveryNEpochsAndAtTheEndOnce) {
  const Trained r = train("epochs", {"train.max_steps=null", "train.epochs=5", "checkpoint.every_epochs=2"});
  EXPECT_EQ(r.step, 35);
  if (!root()) return;
  EXPECT_EQ(r.checkpoints.step_numbers(), (std::vector<std::int64_t>{14, 28, 35}));
  std::vector<std::int64_t> epochs;
  for (const auto& rec : r.metrics.of("checkpoint")) epochs.push_back(rec.at("epoch"));
  EXPECT_EQ(epochs, (std::vector<std::int64_t>{2, 4, 5}));
  // The train records count epochs from 1, by the epoch each step belongs to.
  const auto train = r.metrics.of("train");
  ASSERT_EQ(train.size(), 35u);
  for (const auto& rec : train)
    EXPECT_EQ(rec.at("epoch"), (rec.at("step").get<std::int64_t>() - 1) / 7 + 1) << rec.dump();
}

TEST_F(Policies, CheckpointsWhenTheWallClockIntervalHasPassed) {
  // Every interval is over by the next step: a checkpoint after each (rank 0's clock, carried to
  // every rank by the step's collective).
  const Trained r = train("seconds", {"train.max_steps=4", "checkpoint.every_seconds=1e-9"});
  if (!root()) return;
  EXPECT_EQ(r.checkpoints.step_numbers(), (std::vector<std::int64_t>{1, 2, 3, 4}));
}

TEST_F(Policies, AStopSignalOnOneRankStopsEveryRankAfterTheStepWithACheckpoint) {
  install_stop_handlers({"USR1"});
  if (test_comm().rank() == last_rank()) std::raise(SIGUSR1);
  const Trained r = train("signal", {"train.max_steps=10", "checkpoint.every_steps=5"});
  forget_stop_signal();
  EXPECT_EQ(r.end, RunEnd::stopped_by_signal);
  EXPECT_EQ(r.step, 1);
  if (!root()) return;
  EXPECT_EQ(r.checkpoints.step_numbers(), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(r.checkpoints.steps[0].params, r.params);
}

// ---- the best model -------------------------------------------------------------------------------

TEST_F(Policies, TheBestModelIsSavedWhenTheValidationNllImproves) {
  const std::vector<std::string> sets = {"train.max_steps=null", "train.epochs=4", "data.valid=" + (dir_ / "valid.h5"),
                                         "checkpoint.keep_best=true", "optimizer.lr=0.05"};
  const Trained r = train("best", sets);
  if (root()) {
    // Independently of the loop: the epochs whose validation NLL is below every earlier one.
    const auto valid = r.metrics.of("valid");
    ASSERT_EQ(valid.size(), 4u);
    std::vector<std::int64_t> improved;
    std::vector<double> nll;
    double lowest = std::numeric_limits<double>::infinity();
    for (const auto& v : valid) {
      EXPECT_EQ(v.at("step"), 7 * v.at("epoch").get<std::int64_t>());
      if (v.at("valid_nll").get<double>() < lowest) {
        lowest = v.at("valid_nll");
        improved.push_back(v.at("step"));
        nll.push_back(lowest);
      }
    }
    ASSERT_EQ(r.checkpoints.bests.size(), improved.size());
    for (std::size_t i = 0; i < improved.size(); ++i) {
      EXPECT_EQ(r.checkpoints.bests[i].step, improved[i]);
      EXPECT_EQ(r.checkpoints.bests[i].best_valid_nll, nll[i]);
    }
  }
  // Resumed with a best that nothing can beat: validation goes on, no best model is saved.
  train_to_files("best-files", sets);
  test_comm().barrier();
  Checkpoint from = read_checkpoint(checkpoint_file("best-files", 28));
  from.best_valid_nll = -1e30;
  std::vector<std::string> longer = sets;
  longer.push_back("train.epochs=6");
  const Trained resumed = train("best-files", longer, Faults::none(), &from);
  EXPECT_EQ(resumed.step, 42);
  if (!root()) return;
  EXPECT_EQ(resumed.metrics.of("valid").size(), 2u);
  EXPECT_TRUE(resumed.checkpoints.bests.empty());
}

// ---- resume decisions -----------------------------------------------------------------------------

TEST_F(Policies, ResumeTakesTheNewestValidCheckpointAndContinuesBitIdentically) {
  train_to_files("resume", {"train.max_steps=4", "checkpoint.every_steps=2"});
  const Trained straight = train("straight", {"train.max_steps=6"});
  {
    // No checkpoint: a fresh run.
    const Prepared fresh = prepared("fresh", {"train.max_steps=6"});
    EXPECT_FALSE(decide_resume(fresh, test_comm()).checkpoint.has_value());
  }
  Prepared p = prepared("resume", {"train.max_steps=6"});
  const ResumeDecision plan = decide_resume(p, test_comm());
  ASSERT_TRUE(plan.checkpoint.has_value());
  EXPECT_EQ(plan.checkpoint->step, 4);
  EXPECT_EQ(plan.path, checkpoint_file("resume", 4));
  EXPECT_FALSE(plan.finished);
  const Trained resumed = train("resume", {"train.max_steps=6"}, Faults::none(), &*plan.checkpoint);
  EXPECT_EQ(resumed.step, 6);
  EXPECT_EQ(resumed.params, straight.params) << "a resumed run ends where an uninterrupted one does";
  // At its last step: finished.
  EXPECT_TRUE(decide_resume(prepared("resume", {"train.max_steps=4"}), test_comm()).finished);
}

TEST_F(Policies, ResumePassesOverACorruptCheckpointAndRefusesWhatItCannotUse) {
  train_to_files("corrupt", {"train.max_steps=4", "checkpoint.every_steps=2"});
  test_comm().barrier();
  if (root()) std::filesystem::resize_file(checkpoint_file("corrupt", 4), 100);
  test_comm().barrier();
  const ResumeDecision plan = decide_resume(prepared("corrupt", {"train.max_steps=6"}), test_comm());
  ASSERT_TRUE(plan.checkpoint.has_value());
  EXPECT_EQ(plan.checkpoint->step, 2);
  if (root()) {
    ASSERT_EQ(plan.skipped.size(), 1u);
    EXPECT_NE(plan.skipped[0].find(checkpoint_file("corrupt", 4)), std::string::npos) << plan.skipped[0];
  }
  auto refused = [&](const std::vector<std::string>& sets, const std::string& says) {
    try {
      decide_resume(prepared("corrupt", sets), test_comm());
      ADD_FAILURE() << "accepted: " << says;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Exit::input);
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused({"checkpoint.resume=never"}, "checkpoint.resume: never, but");
  refused({"checkpoint.resume=" + checkpoint_file("corrupt", 4)}, checkpoint_file("corrupt", 4));
  refused({"model.hidden=[9]"}, "cannot change when resuming");
}

}  // namespace
}  // namespace mdn::test
