// Faults survived with nothing lost (real processes under mpiexec): a rank killed with SIGKILL at
// several points, including during a checkpoint write; a crash at each stage of writing a
// checkpoint; an unwritable run directory and a full disk while checkpointing; replica drift.
// After each, the same command resumes from the last good checkpoint and ends bit-identical to an
// uninterrupted run.
#include <grp.h>
#include <unistd.h>

#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class Faults : public LiveRuns {
 protected:
  void SetUp() override {
    LiveRuns::SetUp();
    expect_ok(train(1, "reference"), 1);
  }
  Vec<float> reference() { return final_checkpoint("reference").params; }

  std::vector<std::string> temporaries(const std::string& run) {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ / (run + "/checkpoints"), ec))
      if (e.path().filename().string().rfind(".", 0) == 0) found.push_back(e.path().filename().string());
    return found;
  }
};

TEST_F(Faults, KillNineOfOneRankAtSeveralStepsThenTheSameCommandFinishesIdentically) {
  const std::vector<std::string> sets = {"checkpoint.every_steps=3"};
  for (const auto& [kill_at, victim] : {std::pair{4, 1}, {11, 2}, {17, 0}}) {
    const std::string run = "k" + std::to_string(kill_at);
    auto job = start(3, run, 50, sets, "", false);
    ASSERT_TRUE(eventually([&] { return last_step(run) >= kill_at; }, 60)) << run;
    const int pid = rank_pid(run, victim);
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    const RunResult killed = job->wait();
    EXPECT_FALSE(killed.timed_out) << "mpirun did not end the job";
    EXPECT_NE(killed.exit_code, 0);
    // The same command again: resumes from the last checkpoint and finishes.
    const RankedRun again = train(3, run, sets);
    expect_ok(again, 3);
    EXPECT_NE(again.result.out.find("resuming from"), std::string::npos) << again.result.out;
    EXPECT_EQ(final_checkpoint(run).params, reference()) << "killed at step " << kill_at;
  }
}

TEST_F(Faults, KillNineDuringACheckpointWriteKeepsThePreviousOne) {
  // Every checkpoint write pauses half-way: kill the writer (rank 0) inside the window.
  const std::vector<std::string> sets = {"checkpoint.every_steps=5"};
  auto job = start(2, "kw", 20, sets, "slow-checkpoint@ms=1500", false);
  ASSERT_TRUE(eventually([&] {
    return fs::exists(dir_ / "kw/checkpoints/step-00000005.h5") && !temporaries("kw").empty();
  }, 60)) << "no write of the second checkpoint seen";
  ASSERT_EQ(kill(rank_pid("kw", 0), SIGKILL), 0);
  job->wait();
  EXPECT_FALSE(fs::exists(dir_ / "kw/checkpoints/step-00000010.h5"));
  EXPECT_EQ(temporaries("kw").size(), 1u) << "the interrupted write's temporary";
  const RankedRun again = train(2, "kw", sets);
  expect_ok(again, 2);
  EXPECT_NE(again.result.out.find("resuming from 'kw/checkpoints/step-00000005.h5'"), std::string::npos)
      << again.result.out;
  EXPECT_TRUE(temporaries("kw").empty()) << "stale temporary not cleaned up";
  EXPECT_EQ(final_checkpoint("kw").params, reference());
}

TEST_F(Faults, ACrashAtEachStageOfACheckpointWriteLosesNothing) {
  const std::vector<std::string> sets = {"checkpoint.every_steps=4"};
  for (int stage = 1; stage <= 4; ++stage) {
    const std::string run = "crash" + std::to_string(stage);
    // mpiexec ends the job when rank 0 dies, as in production.
    const RunResult crashed =
        mdn::test::run(mdn_command(2, {"train", "cfg.yaml", "--set", "run.dir=" + run, "--set", sets[0]}),
            {120, {{"MDN_FAULT", "crash@stage=" + std::to_string(stage) + "@step=8"}}, dir_.path()});
    EXPECT_FALSE(crashed.timed_out);
    EXPECT_NE(crashed.exit_code, 0);
    // The previous checkpoint is intact; the interrupted one does not exist under its name.
    EXPECT_NO_THROW(read_checkpoint(dir_ / (run + "/checkpoints/step-00000004.h5"))) << "stage " << stage;
    EXPECT_FALSE(fs::exists(dir_ / (run + "/checkpoints/step-00000008.h5"))) << "stage " << stage;
    EXPECT_EQ(temporaries(run).size(), 1u) << "stage " << stage;
    const RankedRun again = train(2, run, sets);
    expect_ok(again, 2);
    EXPECT_NE(again.result.out.find("resuming from '" + run + "/checkpoints/step-00000004.h5'"), std::string::npos)
        << "stage " << stage << ": " << again.result.out;
    EXPECT_TRUE(temporaries(run).empty());
    EXPECT_EQ(final_checkpoint(run).params, reference()) << "stage " << stage;
  }
}

TEST_F(Faults, UnwritableRunDirectoryWhileCheckpointingIsAClearErrorAndKeepsTheOldCheckpoint) {
  // Root ignores permissions: the whole job runs as an unprivileged user.
  for (const auto& e : fs::recursive_directory_iterator(dir_.path())) give_to_nobody(e.path());
  give_to_nobody(dir_.path());
  std::vector<std::string> cmd = as_nobody();
  for (const auto& a : mpi_launch_keep_going(2)) cmd.push_back(a);
  const std::string script = "\"$0\" \"$@\"; rc=$?; echo $rc > " + dir_.path() + "/.rc.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}; exit $rc";
  cmd.insert(cmd.end(), {"/bin/sh", "-c", script, mdn_binary_for_nobody(dir_.path()), "train", "cfg.yaml", "--set",
                         "run.dir=ro", "--set", "checkpoint.every_steps=4"});
  forget_codes(2);
  Background job(cmd, {120, {{"MDN_FAULT", "slow@ms=100"}, {"HOME", dir_.path()}}, dir_.path()}, dir_ / "ro-log");
  ASSERT_TRUE(eventually([&] { return fs::exists(dir_ / "ro/checkpoints/step-00000004.h5"); }, 60))
      << "the run did not start as an unprivileged user";
  fs::permissions(dir_ / "ro/checkpoints", fs::perms::owner_read | fs::perms::owner_exec);
  const RunResult r = job.wait();
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(codes(2), (std::vector<std::string>{"1", "1"})) << r.out << r.err;
  EXPECT_EQ(count(r.err, "mdn: error: writing checkpoint: cannot create 'ro/checkpoints/.step-00000008.h5.tmp': "
                         "Permission denied\n"), 1) << r.err;
  fs::permissions(dir_ / "ro/checkpoints", fs::perms::owner_all);
  EXPECT_NO_THROW(read_checkpoint(dir_ / "ro/checkpoints/step-00000004.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "ro/checkpoints/step-00000008.h5"));
}

TEST_F(Faults, AFullDiskWhileCheckpointingIsAClearErrorAndKeepsTheOldCheckpoint) {
  // A first run leaves a checkpoint at step 4; the next one may write files of at most 16 KiB
  // (RLIMIT_FSIZE, with SIGXFSZ ignored so that a write fails instead of killing the process),
  // less than a checkpoint: its first checkpoint write fails.
  expect_ok(train(2, "full", {"train.max_steps=4"}), 2);
  // The limit sits between mpiexec and mdn (mpiexec's own shared-memory files must not hit it).
  std::vector<std::string> cmd = mpi_launch_keep_going(2);
  const std::string script = "ulimit -f 16; trap '' XFSZ; \"$0\" \"$@\"; rc=$?; echo $rc > " + dir_.path() +
                             "/.rc.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}; exit $rc";
  cmd.insert(cmd.end(), {"/bin/sh", "-c", script, mdn_binary(), "train", "cfg.yaml", "--set", "run.dir=full", "--set",
                         "train.max_steps=null", "--set", "checkpoint.every_steps=4"});
  forget_codes(2);
  const RunResult full = run(cmd, {120, {}, dir_.path()});
  EXPECT_FALSE(full.timed_out);
  EXPECT_EQ(codes(2), (std::vector<std::string>{"1", "1"})) << full.all();
  EXPECT_EQ(count(full.err, "mdn: error: writing checkpoint: cannot write 'full/checkpoints/.step-00000008.h5.tmp': "
                            "File too large\n"), 1) << full.err;
  EXPECT_EQ(full.signal, 0) << "killed by SIGXFSZ: no clear error";
  EXPECT_NO_THROW(read_checkpoint(dir_ / "full/checkpoints/step-00000004.h5"));
  EXPECT_TRUE(temporaries("full").empty()) << "the failed write's temporary was left behind";
  // With space again, the same command finishes, identical to a run that never failed.
  expect_ok(train(2, "full", {"train.max_steps=null", "checkpoint.every_steps=4"}), 2);
  EXPECT_EQ(final_checkpoint("full").params, reference());
}

TEST_F(Faults, ReplicaDriftIsReportedWithTheRanksInvolved) {
  const RankedRun r = run_mdn_ranks(dir_.path(), 3, {"train", "cfg.yaml", "--set", "run.dir=drift", "--set",
                                                     "train.check_replicas_every=3"},
                                    {{"MDN_FAULT", "drift@step=6@rank=2"}}, 120);
  EXPECT_EQ(r.codes, (std::vector<std::string>{"1", "1", "1"})) << r.result.all();
  EXPECT_EQ(count(r.result.err, "mdn: error: step 6: the ranks' parameters differ (replica drift): ranks 0, 1 hold "
                                "parameters with hash"), 1) << r.result.all();
  EXPECT_NE(r.result.err.find("; rank 2 holds parameters with hash"), std::string::npos) << r.result.all();
  // Rank 0 says, before anything else, that faults are active.
  const std::string warning = "mdn: warning: fault injection is active (MDN_FAULT: drift@step=6@rank=2)";
  EXPECT_EQ(count(r.result.err, warning), 1) << r.result.all();
  EXPECT_LT(r.result.err.find(warning), r.result.err.find("mdn: error")) << r.result.all();
  // Without the fault the same check passes every 3 steps, and nothing speaks of faults.
  const RankedRun ok = run_mdn_ranks(dir_.path(), 3, {"train", "cfg.yaml", "--set", "run.dir=nodrift", "--set",
                                                      "train.check_replicas_every=3"});
  expect_ok(ok, 3);
  EXPECT_EQ(ok.result.all().find("fault injection"), std::string::npos) << ok.result.all();
}

TEST_F(Faults, AMistypedFaultIsAnErrorBeforeAnythingIsWritten) {
  const RankedRun r = run_mdn_ranks(dir_.path(), 2, {"train", "cfg.yaml", "--set", "run.dir=typo"},
                                    {{"MDN_FAULT", "drfit@step=6"}}, 60);
  EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2"})) << r.result.all();
  EXPECT_NE(r.result.err.find("MDN_FAULT: unknown fault 'drfit'"), std::string::npos) << r.result.all();
  EXPECT_FALSE(fs::exists(dir_ / "typo"));
}

}  // namespace
}  // namespace mdn::test
