// A small training problem and helpers to run `mdn train` on it as real processes.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "mdn/checkpoint.hpp"
#include "mdn/config.hpp"
#include "mdn/random.hpp"
#include "support/h5_files.hpp"
#include "support/process.hpp"

namespace mdn::test {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Two inputs, two outputs with two branches: y = +-(sin 3 x0, x0 x1) + noise.
inline void write_data(const std::string& path, Index n, std::uint64_t seed) {
  std::vector<float> x, y;
  rng::Sequence r(seed, rng::kTestData);
  for (Index i = 0; i < n; ++i) {
    const double x0 = 2 * r.uniform() - 1, x1 = 2 * r.uniform() - 1;
    const double sign = r.uniform() < 0.5 ? -1.0 : 1.0;
    x.push_back(static_cast<float>(x0));
    x.push_back(static_cast<float>(x1));
    y.push_back(static_cast<float>(sign * std::sin(3 * x0) + 0.05 * r.normal()));
    y.push_back(static_cast<float>(sign * x0 * x1 + 0.05 * r.normal() + 5.0));
  }
  write_xy(path, x, 2, y, 2);
}

// N = 1037 rows: not divisible by 2 or 3. B = 100 in micro-batches of 20: 5 per batch, not
// divisible by 2 or 3; the last batch has 37 rows. 2 epochs of 11 steps.
inline const char* kConfig = R"(run: {dir: run, seed: 3}
data: {train: train.h5, valid: valid.h5, normalize: true}
model: {hidden: [16, 16], components: 3}
train: {epochs: 2, batch_size: 100, micro_batch: 20}
optimizer: {name: adam, lr: 0.01}
clip: {global_norm: 0.5}
checkpoint: {every_epochs: 1, keep_last: 5}
log: {every_steps: 1}
)";
constexpr int kSteps = 22;

class TrainCli : public testing::Test {
 protected:
  void SetUp() override {
    write_data(dir_ / "train.h5", 1037, 11);
    write_data(dir_ / "valid.h5", 301, 12);
    std::ofstream(dir_ / "cfg.yaml") << kConfig;
  }

  RankedRun train(int np, const std::string& run_dir, std::vector<std::string> sets = {},
                  const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {"train", "cfg.yaml", "--set", "run.dir=" + run_dir};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    return run_mdn_ranks(dir_.path(), np, args, env, 120);
  }

  Checkpoint final_checkpoint(const std::string& run_dir, int step = kSteps) {
    return read_checkpoint(checkpoint_name(dir_ / (run_dir + "/checkpoints"), step));
  }

  std::vector<json> metrics(const std::string& run_dir) {
    std::ifstream in(dir_ / (run_dir + "/metrics.jsonl"));
    std::vector<json> out;
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));  // throws if not JSON
    return out;
  }

  static void expect_ok(const RankedRun& r, int np) {
    EXPECT_FALSE(r.result.timed_out);
    EXPECT_EQ(r.codes, std::vector<std::string>(static_cast<std::size_t>(np), "0")) << r.result.all();
  }

  TempDir dir_;
};

/// Runs that the test acts on while they train: started in the background, every step slowed.
class LiveRuns : public TrainCli {
 protected:
  /// Starts `mdn train` on np ranks in the background, every step slowed down to `ms`.
  /// keep_going: mpiexec lets the other ranks run when one exits (to see every rank's exit
  /// code); without it, a rank that dies ends the job, as in production.
  std::unique_ptr<Background> start(int np, const std::string& run, int ms, std::vector<std::string> sets = {},
                                    std::string extra_fault = "", bool keep_going = true) {
    std::vector<std::string> cmd = keep_going ? mpi_launch_keep_going(np) : mpi_launch(np);
    const std::string script = "\"$0\" \"$@\"; rc=$?; echo $rc > " + dir_.path() +
                               "/.rc.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}; exit $rc";
    cmd.insert(cmd.end(), {"/bin/sh", "-c", script, mdn_binary(), "train", "cfg.yaml", "--set", "run.dir=" + run});
    for (const auto& s : sets) cmd.insert(cmd.end(), {"--set", s});
    RunOptions o;
    o.cwd = dir_.path();
    o.timeout_seconds = 120;
    o.env = {{"MDN_FAULT", "slow@ms=" + std::to_string(ms) + (extra_fault.empty() ? "" : "," + extra_fault)}};
    return std::make_unique<Background>(cmd, o, dir_ / run);
  }

  void forget_codes(int np) {
    for (int r = 0; r < np; ++r) std::remove((dir_ / (".rc." + std::to_string(r))).c_str());
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

  /// The mdn process of rank `rank` of the run whose run.dir is `run`, or -1.
  int rank_pid(const std::string& run, int rank) {
    const auto pids = find_processes("run.dir=" + run, std::string(rank_variable()) + "=" + std::to_string(rank));
    std::vector<int> mdn_pids;
    for (int pid : pids) {
      std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
      std::string comm;
      in >> comm;
      if (comm == "mdn") mdn_pids.push_back(pid);
    }
    return mdn_pids.size() == 1 ? mdn_pids[0] : -1;
  }

  /// Sends `sig` to the rank `rank` of the run whose run.dir is `run` (only to it).
  void signal_rank(const std::string& run, int rank, int sig) {
    const int pid = rank_pid(run, rank);
    ASSERT_GT(pid, 0) << "rank " << rank << " of " << run;
    ASSERT_EQ(kill(pid, sig), 0);
  }
};

}  // namespace mdn::test
