// jobs/train.sbatch on a real single-node SLURM (tools/slurm-up.sh, a ctest fixture): a run that
// needs longer than its time limit is warned, checkpoints, requeues itself and resumes until it
// finishes; `scancel -f -s USR1` does the same by hand. Both end bit-identical to an
// uninterrupted run (the SlurmReference fixture test).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "mdn/checkpoint.hpp"
#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;

const std::string kWork = std::string(MDN_TEST_BINARY_DIR) + "/slurm-work";
const std::string kSource = MDN_TEST_SOURCE_DIR;
// 4000 rows in batches of 100: 40 steps per epoch; 33 epochs = 1320 steps.
const char* kConfig = R"(run: {dir: run, seed: 5}
data: {train: data/train.h5, valid: data/test.h5}
model: {hidden: [16, 16], components: 3}
train: {epochs: 33, batch_size: 100, micro_batch: 50}
optimizer: {name: adam, lr: 0.003}
clip: {global_norm: 2.0}
checkpoint: {every_epochs: 10}
log: {every_steps: 40}
)";
constexpr int kFinalStep = 1320;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// SLURM is up (the fixture ran); otherwise skip, except in CI as root, where it must work.
void require_slurm() {
  const RunResult r = run({"sinfo", "-h", "-o", "%T"}, {20, {}, {}});
  if (r.exit_code == 0 && r.out.find("idle") != std::string::npos) return;
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string(ci) == "true" && geteuid() == 0)
    FAIL() << "SLURM is not available in CI as root: " << r.all();
  GTEST_SKIP() << "no SLURM here (tools/slurm-up.sh needs root and slurm-wlm): " << r.all();
}

std::string job_field(const std::string& id, const std::string& field) {
  const RunResult r = run({"scontrol", "show", "job", id}, {20, {}, {}});
  const std::regex re(field + "=(\\S+)");
  std::smatch m;
  return std::regex_search(r.out, m, re) ? m[1].str() : std::string();
}

/// Submits jobs/train.sbatch from `dir` with extra sbatch options; returns the job id.
std::string submit(const std::string& dir, const std::vector<std::string>& options, const std::string& slow_ms) {
  std::vector<std::string> cmd = {"sbatch", "--parsable", "--output=" + dir + "/job.out"};
  cmd.insert(cmd.end(), options.begin(), options.end());
  cmd.insert(cmd.end(), {kSource + "/jobs/train.sbatch", "cfg.yaml"});
  RunOptions o{30, {{"MDN", mdn_binary()}, {"MDN_FAULT", "slow@ms=" + slow_ms}}, dir};
  const RunResult r = run(cmd, o);
  EXPECT_EQ(r.exit_code, 0) << r.all();
  std::string id = r.out;
  id.erase(id.find_last_not_of(" \n") + 1);
  return id;
}

bool finished(const std::string& id) {
  const std::string state = job_field(id, "JobState");
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT";
}

void prepare_dir(const std::string& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_directory_symlink(kWork + "/data", dir + "/data");
  std::ofstream(dir + "/cfg.yaml") << kConfig;
}

Vec<float> final_params(const std::string& dir) {
  return read_checkpoint(checkpoint_name(dir + "/run/checkpoints", kFinalStep)).params;
}

TEST(SlurmReference, UninterruptedRun) {
  fs::create_directories(kWork + "/data");
  for (auto [file, seed] : {std::pair{"train.h5", "1"}, {"test.h5", "2"}}) {
    const RunResult g = run({"/usr/bin/python3", kSource + "/tools/gen_bishop.py", kWork + "/data/" + file, "--rows",
                             "4000", "--seed", seed});
    ASSERT_EQ(g.exit_code, 0) << g.all();
  }
  prepare_dir(kWork + "/reference");
  const RankedRun r = run_mdn_ranks(kWork + "/reference", 2, {"train", "cfg.yaml"}, {}, 300);
  ASSERT_EQ(r.codes, (std::vector<std::string>{"0", "0"})) << r.result.all();
  EXPECT_NO_THROW(final_params(kWork + "/reference"));
}

TEST(Slurm, TimeLimitSignalCheckpointsRequeuesAndResumesBitIdentically) {
  require_slurm();
  const std::string dir = kWork + "/limit";
  prepare_dir(dir);
  // 1320 steps of 100 ms: longer than the 2-minute limit. The warning comes 30 s before the limit
  // (SLURM may send it up to a minute earlier), so each run does 30-90 s of work.
  const std::string id = submit(dir, {"--time=2", "--signal=B:USR1@30"}, "100");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(eventually([&] { return finished(id); }, 840)) << slurp(dir + "/job.out");
  const std::string log = slurp(dir + "/job.out");
  EXPECT_EQ(job_field(id, "JobState"), "COMPLETED") << log;
  EXPECT_NE(log.find("USR1 from SLURM: asking mdn to checkpoint and stop"), std::string::npos) << log;
  EXPECT_NE(log.find("mdn exited with code 75"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpointed: requeueing job " + id), std::string::npos) << log;
  EXPECT_NE(log.find("resuming from 'run/checkpoints/step-"), std::string::npos) << log;
  EXPECT_NE(log.find("mdn exited with code 0"), std::string::npos) << log;
  EXPECT_GE(std::stoi(job_field(id, "Restarts")), 1);
  EXPECT_EQ(final_params(dir), final_params(kWork + "/reference"));
}

TEST(Slurm, ScancelUsr1DoesTheSame) {
  require_slurm();
  const std::string dir = kWork + "/scancel";
  prepare_dir(dir);
  const std::string id = submit(dir, {"--time=10"}, "20");
  ASSERT_FALSE(id.empty());
  // Wait for training to be under way, then warn the batch shell and the ranks by hand.
  ASSERT_TRUE(eventually([&] { return slurp(dir + "/job.out").find("step 80/1320") != std::string::npos; }, 120))
      << slurp(dir + "/job.out");
  const RunResult s = run({"scancel", "-f", "-s", "USR1", id}, {20, {}, {}});
  ASSERT_EQ(s.exit_code, 0) << s.all();
  ASSERT_TRUE(eventually([&] { return finished(id); }, 300)) << slurp(dir + "/job.out");
  const std::string log = slurp(dir + "/job.out");
  EXPECT_EQ(job_field(id, "JobState"), "COMPLETED") << log;
  EXPECT_NE(log.find("stopped by a signal at step"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpointed: requeueing job " + id + " (restart 1"), std::string::npos) << log;
  EXPECT_EQ(std::stoi(job_field(id, "Restarts")), 1);
  EXPECT_EQ(final_params(dir), final_params(kWork + "/reference"));
}

}  // namespace
}  // namespace mdn::test
