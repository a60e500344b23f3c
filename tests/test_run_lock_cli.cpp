// One training per run directory, with real processes: a second `mdn train` on a run directory
// in use exits with code 2 on every rank, naming the holder, while the first finishes normally;
// `mdn check` reports the holder without writing anything; after a kill -9 of the holder a new
// training starts without any cleanup.
#include <unistd.h>

#include "mdn/run_lock.hpp"
#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

TEST_F(LiveRuns, ASecondTrainingOnARunDirectoryInUseIsRefusedAndTheFirstFinishes) {
  forget_codes(1);
  auto first = start(1, "shared", 150);
  ASSERT_TRUE(eventually([&] { return last_step("shared") >= 2; }, 60)) << "the first run did not start";
  const int holder = rank_pid("shared", 0);
  ASSERT_GT(holder, 0);

  // mdn check sees the holder.
  const RunResult check = run(mdn_command(0, {"check", "cfg.yaml", "--set", "run.dir=shared"}), {60, {}, dir_.path()});
  EXPECT_EQ(check.exit_code, 0) << check.all();
  EXPECT_NE(check.out.find("run lock   held by mdn train on host "), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("process " + std::to_string(holder) + ", since "), std::string::npos) << check.out;

  // The second training: exit 2 on both ranks, one message naming the first.
  const RankedRun second = train(2, "shared");
  EXPECT_FALSE(second.result.timed_out);
  EXPECT_EQ(second.codes, (std::vector<std::string>{"2", "2"})) << second.result.all();
  EXPECT_EQ(count(second.result.err, "is in use by another training (mdn train on host "), 1) << second.result.err;
  EXPECT_NE(second.result.err.find("process " + std::to_string(holder) + ", since "), std::string::npos)
      << second.result.err;
  EXPECT_LT(last_step("shared"), kSteps) << "the first run ended before the second started: the test proves nothing";

  const RunResult r = first->wait();
  EXPECT_EQ(codes(1), (std::vector<std::string>{"0"})) << r.all();
  // One run wrote the run directory: one start record, every step once, in order.
  int starts = 0;
  std::int64_t step = 0;
  for (const json& rec : metrics("shared")) {
    if (rec["kind"] == "start") ++starts;
    if (rec["kind"] == "train") {
      EXPECT_EQ(rec["step"].get<std::int64_t>(), step + 1);
      step = rec["step"];
    }
  }
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(step, kSteps);
}

TEST_F(LiveRuns, CheckReportsAHeldLockWithoutWritingAnything) {
  const RunLock held(dir_ / "held", "run.dir");  // this process stands for a training
  const std::vector<std::string> before = dir_listing(dir_ / "held");
  const RunResult check = run(mdn_command(0, {"check", "cfg.yaml", "--set", "run.dir=held"}), {60, {}, dir_.path()});
  EXPECT_EQ(check.exit_code, 0) << check.all();
  EXPECT_NE(check.out.find("run lock   held by mdn train on host "), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("process " + std::to_string(getpid()) + ", since "), std::string::npos) << check.out;
  EXPECT_EQ(dir_listing(dir_ / "held"), before);
  const RankedRun refused = train(1, "held");
  EXPECT_EQ(refused.codes, (std::vector<std::string>{"2"})) << refused.result.all();
  EXPECT_EQ(dir_listing(dir_ / "held"), before);
}

TEST_F(LiveRuns, AfterAKill9OfTheHolderANewTrainingStartsWithoutCleanup) {
  auto job = start(1, "killed", 150);
  ASSERT_TRUE(eventually([&] { return last_step("killed") >= 2; }, 60)) << "the run did not start";
  signal_rank("killed", 0, SIGKILL);
  job->wait();
  ASSERT_TRUE(fs::exists(dir_ / "killed/mdn.lock"));
  const RunResult check = run(mdn_command(0, {"check", "cfg.yaml", "--set", "run.dir=killed"}), {60, {}, dir_.path()});
  EXPECT_NE(check.out.find("run lock   free"), std::string::npos) << check.all();
  expect_ok(train(2, "killed"), 2);
  expect_ok(train(1, "whole"), 1);
  EXPECT_EQ(final_checkpoint("killed").params, final_checkpoint("whole").params);
}

}  // namespace
}  // namespace mdn::test
