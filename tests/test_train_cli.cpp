// `mdn train` as real processes under mpiexec: bit-identical results for 1, 2 and 3 ranks in
// exact mode, the fast mode's difference, overflow and non-finite handling decided on every rank,
// metrics.jsonl and the progress lines.
#include "mdn/build_info.hpp"
#include "mdn/cpu.hpp"
#include "support/h5_files.hpp"
#include "support/levels.hpp"
#include "support/train_fixture.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

TEST_F(TrainCli, ExactModeIsBitIdenticalForOneTwoAndThreeRanksAtEveryLevel) {
  for (const CpuLevel level : runnable_levels()) {
    SCOPED_TRACE(to_string(level));
    std::vector<Checkpoint> finals;
    std::vector<std::vector<double>> valid;
    for (int np : {1, 2, 3}) {
      const std::string run = "p" + std::to_string(np) + "-" + level_name(level);
      const RankedRun r = train(np, run, {std::string("run.cpu=") + to_string(level)});
      expect_ok(r, np);
      finals.push_back(final_checkpoint(run));
      EXPECT_EQ(finals.back().cpu_level, to_string(level));
      std::vector<double> v;
      double max_norm = 0;
      int train_records = 0;
      for (const json& rec : metrics(run)) {
        if (rec["kind"] == "valid") v.push_back(rec["valid_nll"].get<double>());
        if (rec["kind"] == "train") {
          ++train_records;
          max_norm = std::max(max_norm, rec["grad_norm"].get<double>());
        }
      }
      valid.push_back(v);
      EXPECT_EQ(train_records, kSteps);
      EXPECT_GT(max_norm, 0.5) << "the clip (global_norm 0.5) never clipped: the test would not expose clipping";
      EXPECT_EQ(finals.back().world_size, np);
      EXPECT_EQ(count(r.result.out, "  loss "), kSteps) << "progress lines come from rank 0 only";
    }
    for (std::size_t i = 1; i < finals.size(); ++i) {
      EXPECT_EQ(finals[i].params, finals[0].params) << "parameters differ between 1 and " << i + 1 << " ranks";
      ASSERT_EQ(finals[i].optimizer_state.size(), 2u);
      EXPECT_EQ(finals[i].optimizer_state[0].second, finals[0].optimizer_state[0].second);
      EXPECT_EQ(finals[i].optimizer_state[1].second, finals[0].optimizer_state[1].second);
      EXPECT_EQ(finals[i].optimizer_steps, kSteps);
      EXPECT_EQ(valid[i], valid[0]) << "validation NLLs differ between 1 and " << i + 1 << " ranks";
    }
    EXPECT_EQ(valid[0].size(), 2u);
    EXPECT_TRUE(std::isfinite(valid[0].back()));
  }
}

TEST_F(TrainCli, FullCovarianceTrainsBitIdenticallyOnOneTwoAndThreeRanks) {
  std::vector<Checkpoint> finals;
  std::vector<std::string> valid;
  for (int np : {1, 2, 3}) {
    const std::string run = "full-p" + std::to_string(np);
    expect_ok(train(np, run, {"model.covariance=full"}), np);
    finals.push_back(final_checkpoint(run));
    std::string v;
    for (const json& rec : metrics(run))
      if (rec["kind"] == "valid") v += rec["valid_nll"].dump() + " ";
    valid.push_back(v);
  }
  EXPECT_EQ(finals[0].model.covariance, Covariance::full);
  EXPECT_EQ(finals[0].params.size(), Layout(finals[0].model).size());
  for (std::size_t i = 1; i < finals.size(); ++i) {
    EXPECT_EQ(finals[i].params, finals[0].params) << "parameters differ between 1 and " << i + 1 << " ranks";
    EXPECT_EQ(finals[i].optimizer_state[1].second, finals[0].optimizer_state[1].second);
    EXPECT_EQ(valid[i], valid[0]);
  }
  // The two outputs are correlated within each branch: full covariance fits them better.
  expect_ok(train(2, "diag-p2"), 2);
  double diag = 0, full = 0;
  for (const json& rec : metrics("diag-p2"))
    if (rec["kind"] == "valid") diag = rec["valid_nll"];
  for (const json& rec : metrics("full-p2"))
    if (rec["kind"] == "valid") full = rec["valid_nll"];
  std::printf("validation NLL after %d steps: full covariance %.4f, diagonal %.4f\n", kSteps, full, diag);
  EXPECT_LT(full, diag);
}

TEST_F(TrainCli, RowsSplitOverThreeFilesTrainBitIdenticallyToOneFile) {
  // The training rows in three files of different lengths (one float64 and gzip-chunked, one
  // chunked float32), named by a path and a pattern: the same run as on the one file, for P = 1,
  // 2, 3, and the checkpoint records the files.
  const RunResult split = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/split_h5.py",
                               dir_ / "train.h5", dir_.path()});
  ASSERT_EQ(split.exit_code, 0) << split.all();
  expect_ok(train(1, "one"), 1);
  const Checkpoint one = final_checkpoint("one");
  for (int np : {1, 2, 3}) {
    const std::string run = "three-p" + std::to_string(np);
    expect_ok(train(np, run, {"data.train=[part-a.h5, 'part-[bc].h5']"}), np);
    const Checkpoint three = final_checkpoint(run);
    EXPECT_EQ(three.params, one.params) << "parameters differ from the one-file run at P = " << np;
    ASSERT_EQ(three.train_files.size(), 3u);
    EXPECT_EQ(three.train_files[1].first, fs::weakly_canonical(dir_ / "part-b.h5").string());
    EXPECT_EQ(three.train_files[0].second + three.train_files[1].second + three.train_files[2].second, 1037);
  }
  // mdn check lists the files with their rows, the rows per rank and the memory estimate.
  const RankedRun check = run_mdn_ranks(dir_.path(), 2, {"check", "cfg.yaml", "--set", "run.dir=c",
                                                          "--set", "data.train=[part-a.h5, 'part-[bc].h5']"});
  expect_ok(check, 2);
  for (const std::string s : {"train      3 files, 1037 rows", "  rows 0..466: part-a.h5", "  rows 466..777: part-b.h5",
                              "  rows 777..1037: part-c.h5", "ranks      P = 2: each reads 518..519 rows",
                              "memory     about "})
    EXPECT_NE(check.result.out.find(s), std::string::npos) << s << "\n" << check.result.out;
}

TEST_F(TrainCli, PeakMemoryPerRankStaysWithinItsBound) {
  // 3 M rows of one input and one output (float32: 24 MB): the peak RSS of each rank within 3 x
  // its share of the data in float32 + 64 MiB (README, "Input data"), at P = 1 and 3.
  const Index N = 3'000'000;
  {
    std::vector<float> x(static_cast<std::size_t>(N)), y(static_cast<std::size_t>(N));
    for (Index i = 0; i < N; ++i) {
      x[static_cast<std::size_t>(i)] = static_cast<float>(i % 1000) * 0.001f;
      y[static_cast<std::size_t>(i)] = static_cast<float>(i % 7);
    }
    write_xy(dir_ / "big.h5", x, 1, y, 1);
  }
  for (int np : {1, 3}) {
    const std::string run = "mem-p" + std::to_string(np);
    expect_ok(train(np, run, {"data.train=big.h5", "data.valid=null", "model.hidden=[8]", "model.components=2",
                              "train.epochs=null", "train.max_steps=2", "train.batch_size=256", "train.micro_batch=256"}),
              np);
    json summary;
    for (const json& rec : metrics(run))
      if (rec["kind"] == "summary") summary = rec;
    ASSERT_TRUE(summary.contains("peak_rss_mib")) << summary.dump();
    const double share_mib = static_cast<double>((N + np - 1) / np) * 2 * 4 / (1 << 20);
    ASSERT_EQ(summary["peak_rss_mib"].size(), static_cast<std::size_t>(np));
    for (const json& rss : summary["peak_rss_mib"])
      EXPECT_LE(rss.get<double>(), 3 * share_mib + 64) << "P = " << np << ", share " << share_mib << " MiB";
    EXPECT_GT(summary["estimated_peak_mib"].get<double>(), 2 * share_mib);
  }
}

TEST_F(TrainCli, FastModeDiffersAcrossRankCountsWithinTheRoundingTolerance) {
  expect_ok(train(1, "f1", {"train.reduction=fast"}), 1);
  expect_ok(train(3, "f3", {"train.reduction=fast"}), 3);
  const Checkpoint a = final_checkpoint("f1");
  const Checkpoint b = final_checkpoint("f3");
  const float diff = (a.params - b.params).cwiseAbs().maxCoeff();
  // Float sums in a different order differ in their last bits, so the runs are not identical...
  EXPECT_GT(diff, 0.0f) << "fast mode matched bit for bit: this test cannot tell the modes apart";
  // ...but only by rounding. Adam's update is invariant to the gradient's scale, so a relative
  // gradient perturbation d moves a parameter by about lr * d per step: with d ~ 1e-6 (a few float
  // ulps), lr = 0.01 and 22 steps that is ~2e-7; allow 100x for the dynamics. A wrong reduction
  // (e.g. a mean of per-rank means over uneven shards) perturbs gradients by ~1e-2, i.e. ~2e-3.
  EXPECT_LT(diff, 2e-5f);
}

TEST_F(TrainCli, MetricsAndResolvedConfig) {
  expect_ok(train(2, "m"), 2);
  const auto recs = metrics("m");
  int train_records = 0, valid_records = 0, checkpoints = 0, starts = 0;
  for (const json& rec : recs) {
    const std::string kind = rec.at("kind");
    if (kind == "start") {
      ++starts;
      EXPECT_EQ(rec["step"], 0);
      EXPECT_EQ(rec["ranks"], 2);
      EXPECT_EQ(rec["cpu"], to_string(best_built_level())) << rec.dump();
      EXPECT_EQ(rec["cpu_reason"], "auto");
      EXPECT_EQ(rec["cpu_common"], to_string(best_built_level()));
      EXPECT_EQ(rec["version"].get<std::string>().rfind(version(), 0), 0u) << rec.dump();
    } else if (kind == "train") {
      ++train_records;
      for (const char* k : {"step", "epoch", "loss", "grad_norm", "lr", "samples_per_s", "t_compute", "t_comm", "t_io"})
        EXPECT_TRUE(rec.contains(k)) << k << " missing in " << rec.dump();
      EXPECT_GT(rec["samples_per_s"].get<double>(), 0);
      EXPECT_EQ(rec["lr"].get<double>(), 0.01);
    } else if (kind == "valid") {
      ++valid_records;
      EXPECT_TRUE(rec.contains("valid_nll"));
      EXPECT_EQ(rec["rows"].get<int>(), 301);
    } else if (kind == "checkpoint") {
      ++checkpoints;
    }
  }
  EXPECT_EQ(train_records, kSteps);
  EXPECT_EQ(valid_records, 2);
  EXPECT_GE(checkpoints, 2);
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(recs.front()["kind"], "start");
  EXPECT_EQ(recs.at(1)["kind"], "train");
  EXPECT_EQ(recs.at(1)["step"], 1);
  // The last train record is the final step; its loss is the step's mean NLL.
  // config.yaml is the resolved config.
  std::ifstream in(dir_ / "m/config.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  const Config resolved = parse_config(ss.str(), "config.yaml");
  EXPECT_EQ(resolved.run.dir, "m");
  EXPECT_EQ(*resolved.train.micro_batch, 20);
  EXPECT_EQ(to_yaml(resolved), ss.str());
}

TEST_F(TrainCli, AccumulatorOverflowIsAClearErrorOnEveryRank) {
  const RankedRun r = train(2, "o", {}, {{"MDN_FAULT", "overflow@step=3"}});
  EXPECT_FALSE(r.result.timed_out);
  EXPECT_EQ(r.codes, (std::vector<std::string>{"1", "1"})) << r.result.all();
  EXPECT_EQ(count(r.result.err, "mdn: error: exact reduction: accumulator overflow in 'layers/"), 1) << r.result.all();
  EXPECT_NE(r.result.err.find("' at step 3 (largest |value|"), std::string::npos) << r.result.all();
  EXPECT_EQ(count(r.result.err, "mdn: error"), 1) << r.result.all();
  // Nothing after the overflow was applied or saved: no checkpoint exists yet at step 2.
  EXPECT_TRUE(fs::is_empty(dir_ / "o/checkpoints") || !fs::exists(dir_ / "o/checkpoints/step-00000003.h5"));
}

TEST_F(TrainCli, NonFiniteOnOneRankIsSkippedByEveryRank) {
  // Rank 1 of 3 gets a NaN at step 4: every rank must skip that update. One rank holding the
  // fault on its own reproduces the same run: bit-identical parameters prove the step was
  // skipped everywhere (a rank that applied it would have different parameters).
  const RankedRun three = train(3, "s3", {"train.nonfinite=skip"}, {{"MDN_FAULT", "nonfinite@step=4@rank=1"}});
  expect_ok(three, 3);
  const RankedRun one = train(1, "s1", {"train.nonfinite=skip"}, {{"MDN_FAULT", "nonfinite@step=4@rank=0"}});
  expect_ok(one, 1);
  expect_ok(train(1, "clean"), 1);
  const Checkpoint a = final_checkpoint("s3");
  const Checkpoint b = final_checkpoint("s1");
  const Checkpoint clean = final_checkpoint("clean");
  EXPECT_EQ(a.params, b.params);
  EXPECT_NE(a.params, clean.params) << "the fault changed nothing: the test cannot fail";
  EXPECT_TRUE(a.params.allFinite());
  EXPECT_EQ(a.optimizer_steps, kSteps - 1);
  int skips = 0;
  for (const json& rec : metrics("s3"))
    if (rec["kind"] == "nonfinite") {
      ++skips;
      EXPECT_EQ(rec["step"], 4);
    }
  EXPECT_EQ(skips, 1);
  EXPECT_EQ(count(three.result.out, "step 4: non-finite loss or gradient on some rank: update skipped"), 1);
}

TEST_F(TrainCli, NonFiniteStopExitsOneEverywhereAndSavesTheLastGoodState) {
  const RankedRun r = train(3, "stop", {"train.nonfinite=stop"}, {{"MDN_FAULT", "nonfinite@step=4@rank=2"}});
  EXPECT_FALSE(r.result.timed_out);
  EXPECT_EQ(r.codes, (std::vector<std::string>{"1", "1", "1"})) << r.result.all();
  EXPECT_EQ(count(r.result.err, "mdn: error: step 4: non-finite loss or gradient on some rank (train.nonfinite: stop)"), 1)
      << r.result.all();
  const Checkpoint last = final_checkpoint("stop", 3);  // read_checkpoint refuses NaN parameters
  EXPECT_EQ(last.step, 3);
  EXPECT_TRUE(last.params.allFinite());
  for (const auto& e : fs::directory_iterator(dir_ / "stop/checkpoints"))
    EXPECT_EQ(e.path().filename(), "step-00000003.h5") << "only the last good state is saved";
}

TEST_F(TrainCli, NothingIsWrittenWhenTheChecksFail) {
  const RankedRun r = train(2, "never", {"data.train=missing.h5"});
  EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2"})) << r.result.all();
  EXPECT_FALSE(fs::exists(dir_ / "never"));
}

}  // namespace
}  // namespace mdn::test
