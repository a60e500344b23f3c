// Checkpoints and resume through `mdn train` as real processes: resuming with another rank count
// is bit-identical to an uninterrupted run; corrupt checkpoints are reported and skipped;
// incompatible changes are refused by name; files read back with h5py and the README's PyTorch code.
#include "support/levels.hpp"
#include "support/train_fixture.hpp"
#include "test_paths.hpp"

#include <algorithm>
#include <iostream>

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Flips a byte in the middle of a file (inside the datasets' raw data for these sizes).
void corrupt(const std::string& path) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(io.tellg());
  io.seekg(size * 3 / 4);
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(~byte);
  io.seekp(size * 3 / 4);
  io.write(&byte, 1);
}

TEST_F(TrainCli, ResumeWithAnotherRankCountIsBitIdenticalToAnUninterruptedRun) {
  // 2 epochs on 3 ranks, then on to 4 epochs on 1 rank; against 4 epochs on 2 ranks.
  expect_ok(train(3, "r", {"train.epochs=2"}), 3);
  EXPECT_TRUE(fs::exists(dir_ / "r/checkpoints/step-00000022.h5"));
  const RankedRun resumed = train(1, "r", {"train.epochs=4"});
  expect_ok(resumed, 1);
  EXPECT_NE(resumed.result.out.find("resuming from 'r/checkpoints/step-00000022.h5' at step 22 (saved by 3 ranks, now 1)"),
            std::string::npos) << resumed.result.out;
  expect_ok(train(2, "u", {"train.epochs=4"}), 2);
  const Checkpoint a = final_checkpoint("r", 44);
  const Checkpoint b = final_checkpoint("u", 44);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.optimizer_state[0].second, b.optimizer_state[0].second);
  EXPECT_EQ(a.optimizer_state[1].second, b.optimizer_state[1].second);
  EXPECT_EQ(a.optimizer_steps, 44);
  EXPECT_EQ(a.samples_seen, b.samples_seen);
  EXPECT_EQ(a.best_valid_nll, b.best_valid_nll);
  // The resume record lists the changed key.
  bool found = false;
  for (const json& rec : metrics("r"))
    if (rec["kind"] == "resume") {
      found = true;
      EXPECT_EQ(rec["step"], 22);
      EXPECT_EQ(rec["world_size_then"], 3);
      EXPECT_EQ(rec["changed"]["train.epochs"]["from"], "2");
      EXPECT_EQ(rec["changed"]["train.epochs"]["to"], "4");
    }
  EXPECT_TRUE(found);
}

TEST_F(TrainCli, AResumeKeepsTheCheckpointsLevelAndStaysBitIdentical) {
  // A run forced to x86-64 is requeued with run.cpu: auto on a CPU that runs better levels: it
  // continues at x86-64 (the checkpoint's level), bit-identical to an uninterrupted x86-64 run.
  expect_ok(train(2, "q", {"train.epochs=1", "run.cpu=x86-64"}), 2);
  const RankedRun resumed = train(3, "q", {"train.epochs=2"});
  expect_ok(resumed, 3);
  EXPECT_NE(resumed.result.out.find("cpu: x86-64 (auto: the checkpoint's level;"), std::string::npos)
      << resumed.result.out;
  expect_ok(train(1, "u", {"run.cpu=x86-64"}), 1);
  const Checkpoint a = final_checkpoint("q"), b = final_checkpoint("u");
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.optimizer_state[1].second, b.optimizer_state[1].second);
  EXPECT_EQ(a.cpu_level, "x86-64");
  int starts = 0;
  for (const json& rec : metrics("q")) {
    if (rec["kind"] == "start" && ++starts == 2) {
      EXPECT_EQ(rec["step"], 11);
      EXPECT_EQ(rec["cpu"], "x86-64");
      EXPECT_EQ(rec["cpu_reason"], "checkpoint");
    }
    if (rec["kind"] == "resume") {
      EXPECT_EQ(rec["cpu_then"], "x86-64");
      EXPECT_EQ(rec["cpu"], "x86-64");
      EXPECT_EQ(rec["changed"]["run.cpu"]["from"], "x86-64");
      EXPECT_EQ(rec["changed"]["run.cpu"]["to"], "auto");
    }
  }
  EXPECT_EQ(starts, 2);
}

TEST_F(TrainCli, MidEpochCheckpointsResumeExactly) {
  // Stop at step 7 (inside epoch 1), resume to the end on another rank count.
  expect_ok(train(2, "mid", {"train.max_steps=7", "checkpoint.every_steps=7"}), 2);
  expect_ok(train(3, "mid", {"train.max_steps=null"}), 3);
  expect_ok(train(1, "whole"), 1);
  EXPECT_EQ(final_checkpoint("mid").params, final_checkpoint("whole").params);
}

TEST_F(TrainCli, CheckReportsTheResumeAndRefusesWhatTrainWouldRefuse) {
  // `mdn check` before a (re)submitted job: the same verdict as `mdn train`, and nothing written.
  expect_ok(train(1, "cr", {"train.epochs=1"}), 1);  // step-00000011.h5
  const auto before = dir_listing(dir_ / "cr");
  auto check = [&](std::vector<std::string> sets) {
    std::vector<std::string> args = {"check", "cfg.yaml", "--set", "run.dir=cr"};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    return run_mdn_ranks(dir_.path(), 2, args);
  };
  const RankedRun more = check({"train.epochs=2"});
  expect_ok(more, 2);
  EXPECT_NE(more.result.out.find("resume     resumes from 'cr/checkpoints/step-00000011.h5' at step 11 of 22 (saved by 1 "
                                 "rank); changed keys: train.epochs"),
            std::string::npos) << more.result.out;
  const RankedRun done = check({"train.epochs=1"});
  expect_ok(done, 2);
  EXPECT_NE(done.result.out.find("resume     already finished at step 11"), std::string::npos) << done.result.out;
  const RankedRun fresh = run_mdn_ranks(dir_.path(), 2, {"check", "cfg.yaml", "--set", "run.dir=elsewhere"});
  expect_ok(fresh, 2);
  EXPECT_NE(fresh.result.out.find("resume     a new run"), std::string::npos) << fresh.result.out;
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
  for (const auto& [set, message] : std::vector<std::pair<std::string, std::string>>{
           {"model.hidden=[8]", "model.hidden: is [8] here but [16, 16] in the checkpoint"},
           {"checkpoint.resume=never", "checkpoint.resume: never, but 'cr/checkpoints' holds step checkpoints"}}) {
    const RankedRun r = check({set});
    EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2"})) << r.result.all();
    EXPECT_EQ(count(r.result.err, "mdn: error: --set " + set + ": " + message), 1) << r.result.all();
  }
  EXPECT_EQ(dir_listing(dir_ / "cr"), before) << "mdn check changed the run directory";
}

TEST_F(TrainCli, CorruptNewestCheckpointIsReportedAndThePreviousUsed) {
  expect_ok(train(2, "c", {"train.epochs=2"}), 2);  // step-11 and step-22
  corrupt(dir_ / "c/checkpoints/step-00000022.h5");
  std::ofstream(dir_ / "c/checkpoints/.step-00000033.h5.tmp") << "left by a crash";
  const RankedRun r = train(3, "c", {"train.epochs=2"});
  expect_ok(r, 3);
  EXPECT_NE(r.result.err.find("mdn: warning: skipping a corrupt checkpoint: checkpoint 'c/checkpoints/step-00000022.h5'"),
            std::string::npos) << r.result.all();
  EXPECT_NE(r.result.out.find("resuming from 'c/checkpoints/step-00000011.h5' at step 11"), std::string::npos) << r.result.out;
  EXPECT_FALSE(fs::exists(dir_ / "c/checkpoints/.step-00000033.h5.tmp")) << "stale temporary not cleaned up";
  // The rerun rewrote step 22 from step 11: the same parameters as a clean run.
  expect_ok(train(1, "clean", {"train.epochs=2"}), 1);
  EXPECT_EQ(final_checkpoint("c").params, final_checkpoint("clean").params);
}

TEST_F(TrainCli, TruncatedCheckpointIsSkippedAndOnlyCorruptOnesAreAnError) {
  expect_ok(train(1, "t", {"train.epochs=1", "checkpoint.every_steps=5"}), 1);  // steps 5, 10, 11
  fs::resize_file(dir_ / "t/checkpoints/step-00000011.h5", 1000);
  const RankedRun r = train(2, "t", {"train.epochs=1"});
  expect_ok(r, 2);
  EXPECT_NE(r.result.out.find("resuming from 't/checkpoints/step-00000010.h5'"), std::string::npos) << r.result.all();
  for (const char* f : {"step-00000005.h5", "step-00000010.h5", "step-00000011.h5"}) corrupt(dir_ / ("t/checkpoints/" + std::string(f)));
  const RankedRun bad = train(2, "t", {"train.epochs=2"});
  EXPECT_EQ(bad.codes, (std::vector<std::string>{"2", "2"})) << bad.result.all();
  EXPECT_NE(bad.result.err.find("checkpoint.resume: auto, but no checkpoint in 't/checkpoints' is valid:"),
            std::string::npos) << bad.result.all();
  EXPECT_EQ(count(bad.result.err, "\n  checkpoint 't/checkpoints/step-"), 3) << "each corrupt file named: " << bad.result.all();
}

TEST_F(TrainCli, IncompatibleChangesAreRefusedByName) {
  expect_ok(train(1, "k", {"train.epochs=1"}), 1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.components=4", "--set model.components=4: model.components: is 4 here but 3 in the checkpoint"},
      {"model.hidden=[16, 8]", "--set model.hidden=[16, 8]: model.hidden: is [16, 8] here but [16, 16] in the checkpoint"},
      {"optimizer.name=sgd", "--set optimizer.name=sgd: optimizer.name: is sgd here but adam in the checkpoint"},
      {"data.normalize=false", "--set data.normalize=false: data.normalize: is false here but true in the checkpoint"},
      {"train.batch_size=60", "--set train.batch_size=60: train.batch_size: is 60 here but 100 in the checkpoint"},
      {"run.seed=4", "--set run.seed=4: run.seed: is 4 here but 3 in the checkpoint"},
  };
  for (const auto& [set, message] : cases) {
    const RankedRun r = train(2, "k", {"train.epochs=2", set});
    EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2"})) << set << "\n" << r.result.all();
    EXPECT_EQ(count(r.result.err, "mdn: error: " + message), 1) << r.result.all();
  }
  // Allowed: a new learning rate.
  const RankedRun ok = train(2, "k", {"train.epochs=2", "optimizer.lr=0.005"});
  expect_ok(ok, 2);
  for (const json& rec : metrics("k"))
    if (rec["kind"] == "resume") {
      EXPECT_EQ(rec["changed"]["optimizer.lr"]["to"], "0.005");
    }
  // The training files: another file (with the same rows) is refused, naming both as resolved;
  // the same file under another name (absolute here, relative in the checkpoint, or through a
  // pattern) is accepted; so is a list that resolves to the same files.
  fs::copy_file(dir_ / "train.h5", dir_ / "other.h5");
  const std::string dir = fs::weakly_canonical(dir_.path()).string();
  const RankedRun other = train(2, "k", {"train.epochs=3", "data.train=other.h5"});
  EXPECT_EQ(other.codes, (std::vector<std::string>{"2", "2"})) << other.result.all();
  EXPECT_EQ(count(other.result.err, "mdn: error: --set data.train=other.h5: data.train: file 1 of 1 is '" + dir +
                                    "/other.h5' (" + std::string("1037") + " rows) here but '" + dir + "/train.h5' (" +
                                    std::string("1037") + " rows) in the checkpoint 'k/checkpoints/step-00000022.h5' "
                                    "(of 1); the training files cannot change when resuming"),
            1) << other.result.all();
  const RankedRun more = train(2, "k", {"train.epochs=3", "data.train=[train.h5, other.h5]"});
  EXPECT_EQ(more.codes, (std::vector<std::string>{"2", "2"})) << more.result.all();
  EXPECT_EQ(count(more.result.err, "data.train: file 2 of 2 is '" + dir + "/other.h5' (" + std::string("1037") +
                                   " rows) here but none in the checkpoint"),
            1) << more.result.all();
  expect_ok(train(2, "k", {"train.epochs=3", "data.train=tr*n.h5"}), 2);
  expect_ok(train(2, "k", {"train.epochs=3", "data.train=" + dir + "/train.h5"}), 2);
}

TEST_F(TrainCli, NeverRefusesARunDirWithCheckpointsAndAPathResumesFromIt) {
  expect_ok(train(1, "n", {"train.epochs=1", "checkpoint.every_steps=4"}), 1);
  const RankedRun never = train(1, "n", {"checkpoint.resume=never"});
  EXPECT_EQ(never.codes, (std::vector<std::string>{"2"}));
  EXPECT_NE(never.result.err.find("checkpoint.resume: never, but 'n/checkpoints' holds step checkpoints"), std::string::npos)
      << never.result.all();
  const RankedRun path = train(2, "n", {"checkpoint.resume=n/checkpoints/step-00000004.h5", "train.epochs=1"});
  expect_ok(path, 2);
  EXPECT_NE(path.result.out.find("resuming from 'n/checkpoints/step-00000004.h5' at step 4"), std::string::npos);
  const RankedRun missing = train(1, "n", {"checkpoint.resume=n/nope.h5"});
  EXPECT_EQ(missing.codes, (std::vector<std::string>{"2"}));
  EXPECT_NE(missing.result.err.find("checkpoint 'n/nope.h5': no such file"), std::string::npos) << missing.result.all();
}

std::vector<std::string> files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(TrainCli, ScheduleAndRetention) {
  // every_steps with keep_last: only the newest two remain; best.h5 besides.
  expect_ok(train(2, "s1", {"checkpoint.every_steps=3", "checkpoint.every_epochs=null", "checkpoint.keep_last=2"}), 2);
  EXPECT_EQ(files(dir_ / "s1/checkpoints"),
            (std::vector<std::string>{"best.h5", "step-00000021.h5", "step-00000022.h5"}));
  // every_epochs without best.
  expect_ok(train(1, "s2", {"checkpoint.keep_best=false", "checkpoint.keep_last=10"}), 1);
  EXPECT_EQ(files(dir_ / "s2/checkpoints"), (std::vector<std::string>{"step-00000011.h5", "step-00000022.h5"}));
  // every_seconds: a wall-clock interval shorter than a step checkpoints after every step.
  expect_ok(train(3, "s3", {"checkpoint.every_seconds=1e-9", "checkpoint.every_epochs=null", "checkpoint.keep_last=100",
                            "checkpoint.keep_best=false"}), 3);
  EXPECT_EQ(files(dir_ / "s3/checkpoints").size(), static_cast<std::size_t>(kSteps));
  int records = 0;
  for (const json& rec : metrics("s3")) records += rec["kind"] == "checkpoint" ? 1 : 0;
  EXPECT_EQ(records, kSteps);
}

TEST_F(TrainCli, RerunningAFinishedRunExitsAtOnce) {
  expect_ok(train(2, "f"), 2);
  const auto before = metrics("f").size();
  const RankedRun again = train(3, "f");
  expect_ok(again, 3);
  EXPECT_EQ(count(again.result.out, "already finished at step 22"), 1) << again.result.all();
  EXPECT_EQ(metrics("f").size(), before);
}

TEST_F(TrainCli, CheckpointsReadBackWithH5pyAndTheReadmesPytorchCode) {
  // Both covariance forms: the README's code builds the mixture with torch.distributions
  // (Normal, or MultivariateNormal from the precision) inside MixtureSameFamily.
  for (const std::string covariance : {"diagonal", "full"}) {
    SCOPED_TRACE(covariance);
    const std::string run_dir = "py-" + covariance;
    expect_ok(train(2, run_dir, {"model.covariance=" + covariance}), 2);
    double valid_nll = 0;
    for (const json& rec : metrics(run_dir))
      if (rec["kind"] == "valid" && rec["step"] == kSteps) valid_nll = rec["valid_nll"];
    const RunResult r = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/check_checkpoint.py",
                             std::string(MDN_TEST_SOURCE_DIR) + "/README.md",
                             dir_ / (run_dir + "/checkpoints/step-00000022.h5"), dir_ / "valid.h5"},
                            {120, {}, {}});
    ASSERT_EQ(r.exit_code, 0) << r.all();
    const json out = json::parse(r.out);
    EXPECT_TRUE(out["checksum_ok"].get<bool>());
    EXPECT_TRUE(out["problems"].empty()) << out.dump();
    // PyTorch's float32 network and mdn's agree to float rounding on the mean NLL.
    EXPECT_NEAR(out["nll"].get<double>(), valid_nll, 1e-5) << out.dump();
  }
}

TEST_F(TrainCli, TrainingStepsAgreeWithPytorch) {
  // A second implementation of the whole step: full-batch runs (B = all 1037 rows, so the row
  // order cannot matter) checkpoint every step; tests/data/torch_steps.py loads step 1 (parameters
  // and optimizer state), takes the next 5 steps with torch.autograd, clip_grad_norm_ and
  // torch.optim in float64, and compares with mdn's step 6. mdn computes in float32: observed
  // disagreements are ~5e-7 of the parameters' change over the 5 steps; 1e-5 leaves room for
  // rounding, while one step too few or too many (err_short) is ~0.2.
  struct Case {
    std::string optimizer;
    int ranks;
    std::vector<std::string> sets;
    std::vector<std::string> torch_args;
    std::string name;
  };
  const std::vector<Case> cases = {
      {"adam", 2, {"optimizer.lr=0.01"}, {"--lr", "0.01"}, "adam"},
      {"adam", 3, {"optimizer.lr=0.01", "model.covariance=full"}, {"--lr", "0.01"}, "adam-full"},
      {"adamw", 3, {"optimizer.lr=0.01", "optimizer.weight_decay=0.1"}, {"--lr", "0.01", "--weight-decay", "0.1"}, "adamw"},
      {"sgd", 1,
       {"optimizer.lr=0.1", "optimizer.momentum=0.9", "optimizer.nesterov=true", "optimizer.weight_decay=0.01"},
       {"--lr", "0.1", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.01"}, "sgd"},
  };
  constexpr double kClip = 0.3;
  for (const CpuLevel level : runnable_levels()) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name + " at " + to_string(level));
      const std::string run_dir = "torch-" + c.name + "-" + level_name(level);
      std::vector<std::string> sets = {"optimizer.name=" + c.optimizer, "train.batch_size=1037", "train.micro_batch=61",
                                       "train.epochs=6", "checkpoint.every_steps=1", "checkpoint.keep_last=10",
                                       "clip.global_norm=" + std::to_string(kClip),
                                       std::string("run.cpu=") + to_string(level)};
      sets.insert(sets.end(), c.sets.begin(), c.sets.end());
      expect_ok(train(c.ranks, run_dir, sets), c.ranks);
      const fs::path ckpt = fs::path(dir_.path()) / run_dir / "checkpoints";
      std::vector<std::string> cmd = {"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/torch_steps.py",
                                      std::string(MDN_TEST_SOURCE_DIR) + "/README.md", ckpt / "step-00000001.h5",
                                      ckpt / "step-00000006.h5", dir_ / "train.h5", "--optimizer", c.optimizer,
                                      "--clip", std::to_string(kClip)};
      cmd.insert(cmd.end(), c.torch_args.begin(), c.torch_args.end());
      const RunResult r = run(cmd, {120, {}, {}});
      ASSERT_EQ(r.exit_code, 0) << r.all();
      const json out = json::parse(r.out);
      std::cout << c.name << " at " << to_string(level) << ": err " << out["err"].get<double>()
                << ", one step short " << out["err_short"].get<double>() << "\n";
      EXPECT_EQ(out["steps"], 5);
      EXPECT_LT(out["err"].get<double>(), 1e-5) << out.dump();
      EXPECT_GT(out["err_short"].get<double>(), 1e-2) << out.dump();
      // Clipping took part: at least one replayed step's gradient norm was above the limit.
      const auto norms = out["norms"].get<std::vector<double>>();
      EXPECT_GT(*std::max_element(norms.begin(), norms.end()), kClip) << out.dump();
    }
  }
}

}  // namespace
}  // namespace mdn::test
