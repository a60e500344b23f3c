// Stop signals and the stall watchdog, with real processes under mpiexec: a signal to one rank
// stops every rank at the same step boundary with a checkpoint and exit code 75, and the run
// resumes bit-identically; a stalled rank ends the job with a clear error instead of a hang.
#include <signal.h>

#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class Signals : public TrainCli {
 protected:
  /// Starts `mdn train` on np ranks in the background, every step slowed down to `ms`.
  std::unique_ptr<Background> start(int np, const std::string& run, int ms, std::vector<std::string> sets = {}) {
    std::vector<std::string> cmd = mpi_launch_keep_going(np);
    const std::string script = "\"$0\" \"$@\"; rc=$?; echo $rc > " + dir_.path() +
                               "/.rc.${OMPI_COMM_WORLD_RANK:-0}; exit $rc";
    cmd.insert(cmd.end(), {"/bin/sh", "-c", script, mdn_binary(), "train", "cfg.yaml", "--set", "run.dir=" + run});
    for (const auto& s : sets) cmd.insert(cmd.end(), {"--set", s});
    RunOptions o;
    o.cwd = dir_.path();
    o.timeout_seconds = 120;
    o.env = {{"MDN_FAULT", "slow@ms=" + std::to_string(ms)}};
    return std::make_unique<Background>(cmd, o, dir_ / run);
  }

  std::vector<std::string> codes(int np) {
    std::vector<std::string> out;
    for (int r = 0; r < np; ++r) {
      std::ifstream in(dir_ / (".rc." + std::to_string(r)));
      std::string c;
      in >> c;
      out.push_back(c);
    }
    return out;
  }

  /// The last train record's step, or 0.
  std::int64_t last_step(const std::string& run) {
    std::int64_t step = 0;
    std::ifstream in(dir_ / (run + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      const json rec = json::parse(line, nullptr, false);
      if (!rec.is_discarded() && rec["kind"] == "train") step = rec["step"];
    }
    return step;
  }

  /// Sends `sig` to the rank `rank` of the run whose run.dir is `run` (only to it).
  void signal_rank(const std::string& run, int rank, int sig) {
    const auto pids = find_processes("run.dir=" + run, "OMPI_COMM_WORLD_RANK=" + std::to_string(rank));
    std::vector<int> mdn_pids;
    for (int pid : pids) {
      std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
      std::string comm;
      in >> comm;
      if (comm == "mdn") mdn_pids.push_back(pid);
    }
    ASSERT_EQ(mdn_pids.size(), 1u) << "rank " << rank << " of " << run;
    ASSERT_EQ(kill(mdn_pids[0], sig), 0);
  }
};

TEST_F(Signals, OneRankGetsTheSignalEveryRankStopsAtTheSameStepAndTheRunResumesExactly) {
  for (int np = 1; np <= 3; ++np) std::remove((dir_ / (".rc." + std::to_string(np - 1))).c_str());
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

TEST_F(Signals, ASecondSignalDuringTheStopIsHarmless) {
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

TEST_F(Signals, SignalsOutsideTheConfiguredSetKeepTheirDefaultAction) {
  auto job = start(1, "term", 60, {"run.signals=[USR1]"});
  ASSERT_TRUE(eventually([&] { return last_step("term") >= 2; }, 60));
  signal_rank("term", 0, SIGTERM);  // not in run.signals: terminates
  const RunResult r = job->wait();
  EXPECT_NE(codes(1)[0], "75") << r.out << r.err;
  EXPECT_NE(codes(1)[0], "0");
}

TEST_F(Signals, AStalledRankEndsTheJobWithAClearError) {
  const RankedRun r = run_mdn_ranks(dir_.path(), 2, {"train", "cfg.yaml", "--set", "run.dir=stall", "--set",
                                                     "comm.timeout_seconds=3"},
                                    {{"MDN_FAULT", "stall@step=4@rank=1"}}, 60);
  EXPECT_FALSE(r.result.timed_out) << "the job hung";
  EXPECT_NE(r.result.err.find("mdn: error (rank 0 of 2): MPI_Iallreduce made no progress for 3 s in step 4 "
                              "(computing and reducing the step's gradients)"),
            std::string::npos) << r.result.all();
  EXPECT_NE(r.codes[0], "0");
}

}  // namespace
}  // namespace mdn::test
