// Stop signals and the stall watchdog, with real processes under mpiexec: a signal to one rank
// stops every rank at the same step boundary with a checkpoint and exit code 75, and the run
// resumes bit-identically; a stalled rank ends the job with a clear error instead of a hang.
#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

TEST_F(LiveRuns, OneRankGetsTheSignalEveryRankStopsAtTheSameStepAndTheRunResumesExactly) {
  forget_codes(3);
  auto job = start(3, "sig", 60);
  ASSERT_TRUE(eventually([&] { return last_step("sig") >= 3; }, 60)) << "the run did not start";
  signal_rank("sig", 1, SIGUSR1);  // rank 1 only
  const RunResult r = job->wait();
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(codes(3), (std::vector<std::string>{"75", "75", "75"})) << r.out << r.err;
  const std::int64_t stopped = last_step("sig");
  EXPECT_GE(stopped, 3);
  EXPECT_LT(stopped, kSteps) << "the run finished before the signal took effect: the test proves nothing";
  EXPECT_EQ(count(r.out, "stopped by a signal at step " + std::to_string(stopped) + ": checkpoint"), 1) << r.out;
  const Checkpoint ck = final_checkpoint("sig", static_cast<int>(stopped));
  EXPECT_EQ(ck.step, stopped);
  // Resume with another rank count: the same parameters as a run that never stopped.
  expect_ok(train(2, "sig"), 2);
  expect_ok(train(1, "whole"), 1);
  EXPECT_EQ(final_checkpoint("sig").params, final_checkpoint("whole").params);
}

TEST_F(LiveRuns, ASecondSignalDuringTheStopIsHarmless) {
  auto job = start(2, "twice", 60);
  ASSERT_TRUE(eventually([&] { return last_step("twice") >= 2; }, 60));
  signal_rank("twice", 0, SIGUSR1);
  signal_rank("twice", 0, SIGUSR2);
  signal_rank("twice", 1, SIGTERM);
  const RunResult r = job->wait();
  EXPECT_EQ(codes(2), (std::vector<std::string>{"75", "75"})) << r.out << r.err;
  const std::int64_t stopped = last_step("twice");
  EXPECT_NO_THROW(final_checkpoint("twice", static_cast<int>(stopped)));
}

TEST_F(LiveRuns, SignalsOutsideTheConfiguredSetKeepTheirDefaultAction) {
  auto job = start(1, "term", 60, {"run.signals=[USR1]"});
  ASSERT_TRUE(eventually([&] { return last_step("term") >= 2; }, 60));
  signal_rank("term", 0, SIGTERM);  // not in run.signals: terminates
  const RunResult r = job->wait();
  EXPECT_NE(codes(1)[0], "75") << r.out << r.err;
  EXPECT_NE(codes(1)[0], "0");
}

TEST_F(LiveRuns, AStalledRankEndsTheJobWithAClearError) {
  const RankedRun r = run_mdn_ranks(dir_.path(), 2, {"train", "cfg.yaml", "--set", "run.dir=stall", "--set",
                                                     "comm.timeout_seconds=3"},
                                    {{"MDN_FAULT", "stall@step=4@rank=1"}}, 60, false);
  EXPECT_FALSE(r.result.timed_out) << "the job hung";
  EXPECT_NE(r.result.err.find("mdn: error (rank 0 of 2): MPI_Iallreduce made no progress for 3 s in step 4 "
                              "(computing and reducing the step's gradients)"),
            std::string::npos) << r.result.all();
  EXPECT_NE(r.codes[0], "0");
}

TEST_F(LiveRuns, AfterTheWatchdogARankEndsByItselfWhenTheLauncherDoesNotAnswer) {
  // The launcher stops answering (SIGSTOP; on a cluster: the node is cut off from it), so the
  // watchdog's MPI_Abort cannot end the job: rank 0 must still exit, within the timeout and
  // MpiComm::kAbortGraceSeconds.
  forget_codes(2);
  auto job = start(2, "deaf", 1, {"comm.timeout_seconds=3"}, "stall@step=4@rank=1", false);
  ASSERT_TRUE(eventually([&] { return fs::exists(dir_ / "deaf/metrics.jsonl") && rank_pid("deaf", 0) > 0; }, 60))
      << "the run did not start";
  const int rank0 = rank_pid("deaf", 0);
  ASSERT_EQ(kill(job->pid(), SIGSTOP), 0);
  const bool ended = eventually([&] { return rank_pid("deaf", 0) != rank0; }, 3 + 10 + 15);
  kill(job->pid(), SIGCONT);
  const RunResult r = job->wait();
  EXPECT_TRUE(ended) << "rank 0 still runs with its launcher stopped: " << r.all();
  EXPECT_EQ(codes(2)[0], "1") << r.all();
  EXPECT_NE(r.err.find("MPI_Iallreduce made no progress for 3 s in step 4"), std::string::npos) << r.all();
  // OpenMPI's MPI_Abort waits for the launcher, so the grace ends the rank; MPICH's returns to
  // the process manager's proxy (not stopped here), which ends it at once.
  if (std::string(rank_variable()) == "OMPI_COMM_WORLD_RANK") {
    EXPECT_NE(r.err.find("mdn: error (rank 0): MPI_Abort did not end this process in 10 s; exiting"),
              std::string::npos) << r.all();
  }
}

}  // namespace
}  // namespace mdn::test
