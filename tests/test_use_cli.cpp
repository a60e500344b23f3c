// Using a trained model: mdn eval, predict, sample and inspect as real processes, for any rank
// count; and the known-density check of training quality.
#include "support/train_fixture.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// tools/mdn_model.py against `mdn predict` (with quantiles) and `mdn eval --json` of the same
/// data file (tests/data/check_python_module.py), within float rounding of the network.
void expect_python_module_agrees(const std::string& dir, const std::string& ckpt, const std::string& data,
                                 const std::string& predict, const json& eval) {
  std::ofstream(dir + "/eval.json") << eval.dump();
  const RunResult r = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/check_python_module.py",
                           dir + "/" + ckpt, dir + "/" + data, dir + "/" + predict, dir + "/eval.json"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  const json out = json::parse(r.out);
  std::printf("tools/mdn_model.py against mdn: %s\n", out.dump().c_str());
  for (const auto& [key, value] : out.items()) {
    if (key == "sample_mean") EXPECT_LT(value.get<double>(), 5.0) << "standard errors";
    else EXPECT_LT(value.get<double>(), 1e-5) << key;
  }
}

class UseCli : public TrainCli {
 protected:
  void SetUp() override {
    TrainCli::SetUp();
    expect_ok(train(2, "run"), 2);
    ckpt_ = "run/checkpoints/step-00000022.h5";
  }
  RankedRun mdn(int np, const std::vector<std::string>& args) { return run_mdn_ranks(dir_.path(), np, args, {}, 120); }
  std::string ckpt_;
};

TEST_F(UseCli, EvalEqualsTheLoggedValidationNllForAnyRankCount) {
  double logged = 0;
  for (const json& rec : metrics("run"))
    if (rec["kind"] == "valid" && rec["step"] == kSteps) logged = rec["valid_nll"];
  for (int np : {1, 2, 3}) {
    const RankedRun r = mdn(np, {"eval", "--checkpoint", ckpt_, "--data", "valid.h5", "--json"});
    expect_ok(r, np);
    const json out = json::parse(r.result.out);
    EXPECT_EQ(out["nll"].get<double>(), logged) << np << " ranks";
    EXPECT_EQ(out["count"], 301);
    const RankedRun text = mdn(np, {"eval", "--checkpoint", ckpt_, "--data", "valid.h5"});
    EXPECT_NE(text.result.out.find(fmt::format("nll {:.6f}  (301 rows", logged)), std::string::npos) << text.result.out;
  }
}

TEST_F(UseCli, CalibrationAndQuantilesAreTheSameForAnyRankCountAndAgreeWithPredict) {
  // Every number of eval --json (the scores are sums and counts reduced exactly; the HDR draws
  // are keyed by the global row) and every quantile are identical for P = 1, 2, 3.
  std::vector<json> evals;
  for (int np : {1, 2, 3}) {
    const RankedRun r = mdn(np, {"eval", "--checkpoint", ckpt_, "--data", "valid.h5", "--json", "--hdr-samples", "300"});
    expect_ok(r, np);
    evals.push_back(json::parse(r.result.out));
    const std::string q = "q" + std::to_string(np) + ".h5";
    expect_ok(mdn(np, {"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", q, "--quantiles",
                       "0.025,0.25,0.5,0.75,0.975"}),
              np);
  }
  for (const char* key : {"nll", "crps", "pit_histogram", "calibration_error", "coverage", "hdr_coverage"})
    for (std::size_t i = 1; i < evals.size(); ++i) EXPECT_EQ(evals[i][key], evals[0][key]) << key << ", " << i + 1 << " ranks";
  const Array q1 = read_array(dir_ / "q1.h5", "quantiles");
  EXPECT_EQ(q1.dims, (std::vector<hsize_t>{301, 5, 2}));
  for (const char* f : {"q2.h5", "q3.h5"}) EXPECT_EQ(read_array(dir_ / f, "quantiles").data, q1.data) << f;

  // From predict's mixtures, independently: the PIT of y, the histogram, the central-interval
  // coverage (y between the quantiles 0.025 and 0.975 is the 95% interval) and the quantiles'
  // order.
  const json& e = evals[0];
  const Array pi = read_array(dir_ / "q1.h5", "pi"), mu = read_array(dir_ / "q1.h5", "mu"),
              sigma = read_array(dir_ / "q1.h5", "sigma"), y = read_array(dir_ / "valid.h5", "y");
  for (std::size_t l = 0; l < 2; ++l) {
    std::vector<std::int64_t> hist(10, 0);
    std::int64_t inside95 = 0, inside50 = 0;
    for (std::size_t i = 0; i < 301; ++i) {
      long double u = 0;
      for (std::size_t k = 0; k < 3; ++k)
        u += pi(i, k) * 0.5L * std::erfc(-(y(i, l) - mu(i, k, l)) / (sigma(i, k, l) * std::sqrt(2.0L)));
      hist[std::min<std::size_t>(9, static_cast<std::size_t>(u * 10))] += 1;
      inside95 += (y(i, l) >= q1(i, 0, l) && y(i, l) <= q1(i, 4, l)) ? 1 : 0;
      inside50 += (y(i, l) >= q1(i, 1, l) && y(i, l) <= q1(i, 3, l)) ? 1 : 0;
      for (std::size_t q = 1; q < 5; ++q) ASSERT_LT(q1(i, q - 1, l), q1(i, q, l));
    }
    EXPECT_EQ(e["pit_histogram"][l].get<std::vector<std::int64_t>>(), hist) << "output " << l;
    EXPECT_NEAR(e["coverage"][l]["0.95"].get<double>(), inside95 / 301.0, 1.5 / 301) << "output " << l;
    EXPECT_NEAR(e["coverage"][l]["0.5"].get<double>(), inside50 / 301.0, 1.5 / 301) << "output " << l;
    EXPECT_GT(e["crps"][l].get<double>(), 0.0);
  }
  for (const char* level : {"0.5", "0.8", "0.9", "0.95"}) {
    const double c = e["hdr_coverage"][level].get<double>();
    EXPECT_GT(c, 0.0);
    EXPECT_LE(c, 1.0);
  }
  expect_python_module_agrees(dir_.path(), ckpt_, "valid.h5", "q1.h5", e);
  const RankedRun bad = mdn(2, {"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "b.h5", "--quantiles", "0.5,1"});
  EXPECT_EQ(bad.codes, (std::vector<std::string>{"2", "2"})) << bad.result.all();
  EXPECT_NE(bad.result.err.find("--quantiles: 1 is not in (0, 1)"), std::string::npos) << bad.result.err;
}

TEST_F(UseCli, PredictGivesConsistentMixturesInDataUnits) {
  expect_ok(mdn(3, {"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "p3.h5"}), 3);
  expect_ok(mdn(1, {"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "p1.h5"}), 1);
  const Checkpoint ck = read_checkpoint(dir_ / ckpt_);
  const std::size_t N = 301, K = 3, L = 2;
  const Array pi = read_array(dir_ / "p3.h5", "pi"), mu = read_array(dir_ / "p3.h5", "mu"),
              sigma = read_array(dir_ / "p3.h5", "sigma"), mean = read_array(dir_ / "p3.h5", "mean"),
              var = read_array(dir_ / "p3.h5", "variance"), mode = read_array(dir_ / "p3.h5", "mode");
  EXPECT_EQ(pi.dims, (std::vector<hsize_t>{N, K}));
  EXPECT_EQ(mu.dims, (std::vector<hsize_t>{N, K, L}));
  EXPECT_EQ(sigma.dims, (std::vector<hsize_t>{N, K, L}));
  EXPECT_EQ(mean.dims, (std::vector<hsize_t>{N, L}));
  for (const char* name : {"pi", "mu", "sigma", "mean", "variance", "mode"})
    EXPECT_EQ(read_array(dir_ / "p3.h5", name).data, read_array(dir_ / "p1.h5", name).data) << name << ": 3 ranks vs 1";
  for (std::size_t i = 0; i < N; ++i) {
    double sum = 0;
    std::size_t heaviest = 0;
    for (std::size_t k = 0; k < K; ++k) {
      sum += pi(i, k);
      if (pi(i, k) > pi(i, heaviest)) heaviest = k;
    }
    ASSERT_NEAR(sum, 1.0, 1e-12) << "row " << i;
    for (std::size_t l = 0; l < L; ++l) {
      double m = 0, second = 0;
      for (std::size_t k = 0; k < K; ++k) {
        ASSERT_GE(sigma(i, k, l), ck.model.sigma_min * ck.norm.y_std(static_cast<Index>(l)) * (1 - 1e-12));
        m += pi(i, k) * mu(i, k, l);
        second += pi(i, k) * (sigma(i, k, l) * sigma(i, k, l) + mu(i, k, l) * mu(i, k, l));
      }
      ASSERT_NEAR(mean(i, l), m, 1e-12 * (1 + std::abs(m)));
      ASSERT_NEAR(var(i, l), second - m * m, 1e-9 * (1 + second));
      ASSERT_EQ(mode(i, l), mu(i, heaviest, l));
    }
  }
  // Data units: the outputs (y near 5 in the file's second column) are around 5, not 0.
  double avg = 0;
  for (std::size_t i = 0; i < N; ++i) avg += mean(i, 1) / N;
  EXPECT_NEAR(avg, 5.0, 0.5);
}

TEST_F(UseCli, SampleMatchesTheMixtureMomentsAndIsTheSameForAnyRankCount) {
  const std::size_t S = 4000, L = 2;
  expect_ok(mdn(3, {"sample", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "s3.h5", "--samples",
                    std::to_string(S), "--seed", "9"}), 3);
  expect_ok(mdn(1, {"sample", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "s1.h5", "--samples",
                    std::to_string(S), "--seed", "9"}), 1);
  expect_ok(mdn(2, {"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "p.h5"}), 2);
  const Array s = read_array(dir_ / "s3.h5", "samples");
  EXPECT_EQ(s.dims, (std::vector<hsize_t>{301, S, L}));
  EXPECT_EQ(s.data, read_array(dir_ / "s1.h5", "samples").data) << "3 ranks vs 1";
  const Array pi = read_array(dir_ / "p.h5", "pi"), mu = read_array(dir_ / "p.h5", "mu"),
              sigma = read_array(dir_ / "p.h5", "sigma"), mean = read_array(dir_ / "p.h5", "mean"),
              var = read_array(dir_ / "p.h5", "variance");
  for (std::size_t i = 0; i < 301; i += 30) {
    for (std::size_t l = 0; l < L; ++l) {
      double m = 0, v = 0;
      for (std::size_t j = 0; j < S; ++j) m += s(i, j, l) / S;
      for (std::size_t j = 0; j < S; ++j) v += (s(i, j, l) - m) * (s(i, j, l) - m) / (S - 1);
      // Tolerances from the sample count: 5 standard errors of the mean and of the variance
      // (whose standard error needs the mixture's fourth central moment).
      double m4 = 0;
      for (std::size_t k = 0; k < 3; ++k) {
        const double d = mu(i, k, l) - mean(i, l), s2 = sigma(i, k, l) * sigma(i, k, l);
        m4 += pi(i, k) * (d * d * d * d + 6 * d * d * s2 + 3 * s2 * s2);
      }
      const double V = var(i, l);
      EXPECT_NEAR(m, mean(i, l), 5 * std::sqrt(V / S)) << "row " << i << " output " << l;
      EXPECT_NEAR(v, V, 5 * std::sqrt((m4 - V * V) / S)) << "row " << i << " output " << l;
    }
  }
  // Temperatures near zero: every sample is the heaviest component's mean.
  expect_ok(mdn(2, {"sample", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "cold.h5", "--samples", "3",
                    "--temperature", "1e-4", "--sigma-temperature", "1e-9"}), 2);
  const Array cold = read_array(dir_ / "cold.h5", "samples");
  const Array mode = read_array(dir_ / "p.h5", "mode");
  for (std::size_t i = 0; i < 301; ++i)
    for (std::size_t l = 0; l < L; ++l) ASSERT_NEAR(cold(i, 2, l), mode(i, l), 1e-6) << i;
}

TEST_F(UseCli, InspectDescribesAndChecksTheFile) {
  const RankedRun r = mdn(1, {"inspect", ckpt_});
  expect_ok(r, 1);
  for (const char* s : {"format      mdn-checkpoint, version 4", "checksum    ok (", "cpu level   x86-64",
                        "epoch order feistel6", "/train.h5 (1037 rows)",
                        "model       2 -> [16, 16] tanh -> K = 3 components, diagonal covariance, softplus sigma (sigma_min 0.001); 575 parameters",
                        "progress    step 22, epoch 2, 2074 samples seen; saved by 2 ranks", "optimizer   adam, step 22",
                        "    batch_size: 100"})
    EXPECT_NE(r.result.out.find(s), std::string::npos) << s << "\n" << r.result.out;
  const RankedRun j = mdn(2, {"inspect", ckpt_, "--json"});
  expect_ok(j, 2);
  const json out = json::parse(j.result.out);
  EXPECT_TRUE(out["checksum_ok"].get<bool>());
  EXPECT_EQ(out["parameters"], 2 * 16 + 16 + 16 * 16 + 16 + 16 * 15 + 15);
  EXPECT_EQ(out["world_size"], 2);
  EXPECT_EQ(out["hidden"], json::array({16, 16}));
  // A corrupted copy: the report says so and the exit code is 2.
  fs::copy_file(dir_ / ckpt_, dir_ / "bad.h5");
  {
    const Array w = read_array(dir_ / "bad.h5", "model/layers/0/weight");
    h5::Handle f = h5::checked(H5Fopen((dir_ / "bad.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::Handle d = h5::checked(H5Dopen2(f.get(), "model/layers/0/weight", H5P_DEFAULT), "ds");
    std::vector<float> v(w.data.begin(), w.data.end());
    v[3] += 1.0f;
    h5::check(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "write");
  }
  const RankedRun bad = mdn(2, {"inspect", "bad.h5"});
  EXPECT_EQ(bad.codes, (std::vector<std::string>{"2", "2"}));
  EXPECT_NE(bad.result.out.find("checksum    MISMATCH"), std::string::npos) << bad.result.out;
}

TEST_F(UseCli, BadInputIsOneClearErrorOnEveryRank) {
  auto expect_error = [&](const std::vector<std::string>& args, const std::string& message) {
    const RankedRun r = mdn(2, args);
    EXPECT_FALSE(r.result.timed_out);
    EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2"})) << r.result.all();
    EXPECT_EQ(count(r.result.err, "mdn: error"), 1) << r.result.all();
    EXPECT_NE(r.result.err.find(message), std::string::npos) << "want: " << message << "\n" << r.result.all();
  };
  expect_error({"eval", "--checkpoint", "nope.h5", "--data", "valid.h5"}, "checkpoint 'nope.h5': no such file");
  write_xy(dir_ / "wide.h5", std::vector<float>(30, 1.0f), 3, std::vector<float>(20, 1.0f), 2);
  expect_error({"eval", "--checkpoint", ckpt_, "--data", "wide.h5"},
               "--data 'wide.h5': dataset 'x' has 3 columns; the model takes 2 inputs");
  expect_error({"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "no/such/dir/p.h5"},
               "--output 'no/such/dir/p.h5': directory 'no/such/dir' does not exist");
  expect_error({"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--x", "inputs", "--output", "p.h5"},
               "--input 'valid.h5': no dataset 'inputs'");
  expect_error({"sample", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "s.h5", "--samples", "0"},
               "--samples must be at least 1");
  // An output that is one of the command's inputs (also under another name) is refused, and
  // both files are left as they were.
  const auto before_valid = fs::file_size(dir_ / "valid.h5");
  const auto before_ckpt = fs::file_size(dir_ / ckpt_);
  expect_error({"predict", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", "./valid.h5"},
               "--output './valid.h5' is the same file as --input 'valid.h5': it would be overwritten");
  expect_error({"sample", "--checkpoint", ckpt_, "--input", "valid.h5", "--output", ckpt_, "--samples", "2"},
               "--output '" + ckpt_ + "' is the same file as --checkpoint '" + ckpt_ + "'");
  EXPECT_EQ(fs::file_size(dir_ / "valid.h5"), before_valid);
  EXPECT_EQ(fs::file_size(dir_ / ckpt_), before_ckpt);
  EXPECT_NO_THROW(read_checkpoint(dir_ / ckpt_));
  expect_error({"eval", "--checkpoint", ckpt_}, "--data is required");
  expect_error({"inspect", ckpt_, "--verbose"}, "--verbose");
  EXPECT_FALSE(fs::exists(dir_ / "p.h5"));
  for (const char* cmd : {"check", "train", "eval", "predict", "sample", "inspect", "keys"}) {
    const RankedRun h = mdn(1, {cmd, "--help"});
    EXPECT_EQ(h.codes, (std::vector<std::string>{"0"})) << cmd;
    EXPECT_NE(h.result.out.find("Usage:"), std::string::npos) << cmd;
  }
}

/// Writes known-density files (tools/gen_known_density.py: name, rows, seed, then `extra`
/// arguments for every file) into dir and a config `kd.yaml` with `model` as its model line;
/// returns the true NLL of `test.h5`, -mean(logp_true).
double known_density(const TempDir& dir, std::initializer_list<std::tuple<const char*, int, int>> files,
                     const std::vector<std::string>& extra, const std::string& train, const std::string& model,
                     int epochs) {
  const std::string gen = std::string(MDN_TEST_SOURCE_DIR) + "/tools/gen_known_density.py";
  for (auto [file, rows, seed] : files) {
    std::vector<std::string> cmd = {"/usr/bin/python3", gen, dir / file, "--rows", std::to_string(rows), "--seed",
                                    std::to_string(seed)};
    cmd.insert(cmd.end(), extra.begin(), extra.end());
    const RunResult r = run(cmd);
    EXPECT_EQ(r.exit_code, 0) << r.all();
  }
  std::ofstream(dir / "kd.yaml") << "run: {dir: run, seed: 1}\ndata: {train: " << train
                                 << ", valid: test.h5}\nmodel: " << model << "\ntrain: {epochs: " << epochs
                                 << R"(, batch_size: 256, micro_batch: 128}
optimizer: {name: adam, lr: 0.003, schedule: {name: cosine, min_lr: 0.0001}}
clip: {global_norm: 5.0}
checkpoint: {every_epochs: null, keep_best: false}
log: {every_steps: 1000}
)";
  const Array logp = read_array(dir / "test.h5", "logp_true");
  double true_nll = 0;
  for (double v : logp.data) true_nll -= v / static_cast<double>(logp.data.size());
  return true_nll;
}

TEST(KnownDensity, TrainingApproachesTheTrueNllAndCloserWithMoreDataAndEpochs) {
  TempDir dir;
  const double true_nll = known_density(dir, {{"small.h5", 3000, 3}, {"large.h5", 20000, 1}, {"test.h5", 5000, 2}}, {},
                                        "small.h5", "{hidden: [64, 64], components: 6}", 30);
  // NLL gap to the truth on the test file of a model trained on `rows` rows for `epochs` epochs.
  auto gap = [&](const std::string& name, const std::string& train_file, int rows, int epochs) {
    const RankedRun r = run_mdn_ranks(dir.path(), 2, {"train", "kd.yaml", "--set", "run.dir=" + name, "--set",
                                                      "data.train=" + train_file, "--set",
                                                      "train.epochs=" + std::to_string(epochs)}, {}, 300);
    EXPECT_EQ(r.codes, (std::vector<std::string>{"0", "0"})) << r.result.all();
    const std::int64_t steps = static_cast<std::int64_t>((rows + 255) / 256) * epochs;
    const RankedRun e = run_mdn_ranks(dir.path(), 2, {"eval", "--checkpoint", checkpoint_name(name + "/checkpoints", steps),
                                                      "--data", "test.h5", "--json"});
    EXPECT_EQ(e.codes, (std::vector<std::string>{"0", "0"})) << e.result.all();
    return json::parse(e.result.out)["nll"].get<double>() - true_nll;
  };
  const double small = gap("small", "small.h5", 3000, 30);
  const double large = gap("large", "large.h5", 20000, 40);
  std::printf("true NLL %.4f; gap: 3000 rows x 30 epochs %.4f, 20000 rows x 40 epochs %.4f nats/sample\n", true_nll, small, large);
  EXPECT_GT(small, -0.02) << "better than the true density by more than noise: the check is broken";
  EXPECT_LT(small, 0.1);
  EXPECT_LT(large, small);
  EXPECT_LT(large, 0.03);
}

TEST(KnownDensity, FullCovarianceBeatsDiagonalOnCorrelatedOutputsAndNearsTheTruth) {
  // Three outputs whose components are strongly correlated (up to about 0.9, changing with x):
  // with the same K, full covariance must beat diagonal, and come within 0.2 nats of the truth.
  TempDir dir;
  const double true_nll = known_density(dir, {{"train.h5", 20000, 1}, {"test.h5", 5000, 2}},
                                        {"--outputs", "3", "--covariance", "full"}, "train.h5",
                                        "{hidden: [64, 64], components: 3}", 40);
  const std::int64_t steps = (20000 + 255) / 256 * 40;
  auto nll = [&](const std::string& covariance) {
    const RankedRun r = run_mdn_ranks(dir.path(), 2, {"train", "kd.yaml", "--set", "run.dir=" + covariance, "--set",
                                                      "model.covariance=" + covariance}, {}, 300);
    EXPECT_EQ(r.codes, (std::vector<std::string>{"0", "0"})) << r.result.all();
    const RankedRun e = run_mdn_ranks(dir.path(), 2, {"eval", "--checkpoint", checkpoint_name(covariance + "/checkpoints", steps),
                                                      "--data", "test.h5", "--json"});
    EXPECT_EQ(e.codes, (std::vector<std::string>{"0", "0"})) << e.result.all();
    return json::parse(e.result.out)["nll"].get<double>();
  };
  const double full = nll("full"), diagonal = nll("diagonal");
  std::printf("true NLL %.4f; K = 3: full covariance %.4f (gap %.4f), diagonal %.4f (gap %.4f) nats/sample\n", true_nll,
              full, full - true_nll, diagonal, diagonal - true_nll);
  EXPECT_GT(full - true_nll, -0.02) << "better than the true density by more than noise: the check is broken";
  EXPECT_LT(full - true_nll, 0.2);
  EXPECT_LT(full, diagonal - 0.2);

  // predict and sample of the full model, checked by an independent computation from predict's
  // own datasets (tests/data/check_full_predict.py).
  const std::string ckpt = checkpoint_name("full/checkpoints", steps);
  const RankedRun p = run_mdn_ranks(dir.path(), 3, {"predict", "--checkpoint", ckpt, "--input", "test.h5", "--output", "p.h5",
                                                    "--quantiles", "0.1,0.5,0.9"});
  EXPECT_EQ(p.codes, (std::vector<std::string>{"0", "0", "0"})) << p.result.all();
  EXPECT_NE(p.result.out.find("covariance (5000, 3, 3, 3), covariance_total (5000, 3, 3)"), std::string::npos) << p.result.out;
  const RankedRun ev = run_mdn_ranks(dir.path(), 2, {"eval", "--checkpoint", ckpt, "--data", "test.h5", "--json",
                                                     "--hdr-samples", "0"});
  EXPECT_EQ(ev.codes, (std::vector<std::string>{"0", "0"})) << ev.result.all();
  expect_python_module_agrees(dir.path(), ckpt, "test.h5", "p.h5", json::parse(ev.result.out));
  const Array test_x = read_array(dir / "test.h5", "x");  // 8 rows for sampling
  write_xy(dir / "few.h5", std::vector<float>(test_x.data.begin(), test_x.data.begin() + 2 * 8), 2,
           std::vector<float>(3 * 8, 0.0f), 3);
  const RankedRun pf = run_mdn_ranks(dir.path(), 1, {"predict", "--checkpoint", ckpt, "--input", "few.h5", "--output", "pf.h5"});
  EXPECT_EQ(pf.codes, (std::vector<std::string>{"0"})) << pf.result.all();
  const RankedRun sm = run_mdn_ranks(dir.path(), 2, {"sample", "--checkpoint", ckpt, "--input", "few.h5", "--output", "s.h5",
                                                     "--samples", "20000"});
  EXPECT_EQ(sm.codes, (std::vector<std::string>{"0", "0"})) << sm.result.all();
  const std::string check = std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/check_full_predict.py";
  const RunResult all = run({"/usr/bin/python3", check, dir / "p.h5", dir / "test.h5"});
  ASSERT_EQ(all.exit_code, 0) << all.all();
  const json whole = json::parse(all.out);
  EXPECT_NEAR(whole["nll"].get<double>(), full, 1e-7) << "torch.distributions on predict's covariance against mdn eval";
  EXPECT_LT(whole["consistency"].get<double>(), 1e-9);
  const RunResult c = run({"/usr/bin/python3", check, dir / "pf.h5", dir / "few.h5", dir / "s.h5"});
  ASSERT_EQ(c.exit_code, 0) << c.all();
  const json few = json::parse(c.out);
  std::printf("predict and sample of 8 rows: %s\n", few.dump().c_str());
  // 8 rows x 3 outputs of 20000 samples: a mean off by more than 5 standard errors, or a
  // covariance off by 5% (its relative standard error is about 1-2% here), is a mistake.
  EXPECT_LT(few["sample_z"].get<double>(), 5.0);
  EXPECT_LT(few["sample_cov"].get<double>(), 0.05);
}

}  // namespace
}  // namespace mdn::test

namespace mdn::test {
namespace {

TEST(Tools, BishopDataTrainPredictAndPlots) {
  TempDir dir;
  const std::string tools = std::string(MDN_TEST_SOURCE_DIR) + "/tools/";
  const std::string py = "/usr/bin/python3";
  auto ok = [](const RunResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.all();
    return r;
  };
  ok(run({py, tools + "gen_bishop.py", dir / "train.h5", "--rows", "1500", "--seed", "1"}));
  ok(run({py, tools + "gen_bishop.py", dir / "test.h5", "--rows", "500", "--seed", "2"}));
  const Array x = read_array(dir / "train.h5", "x"), y = read_array(dir / "train.h5", "y");
  ASSERT_EQ(x.dims, (std::vector<hsize_t>{1500, 1}));
  for (std::size_t i = 0; i < 1500; ++i) {  // x = t + 0.3 sin(2 pi t) + U(-0.1, 0.1)
    const double t = y.data[i];
    ASSERT_GE(t, 0.0);
    ASSERT_LT(t, 1.0);
    ASSERT_LE(std::abs(x.data[i] - t - 0.3 * std::sin(2 * M_PI * t)), 0.1 + 1e-6);
  }
  std::ofstream(dir / "b.yaml") << R"(run: {dir: run}
data: {train: train.h5, valid: test.h5}
model: {hidden: [16, 16], components: 4}
train: {epochs: 5, batch_size: 100}
log: {every_steps: 5}
)";
  const RankedRun t = run_mdn_ranks(dir.path(), 2, {"train", "b.yaml"});
  EXPECT_EQ(t.codes, (std::vector<std::string>{"0", "0"})) << t.result.all();
  ok(run({py, tools + "plot.py", "grid", dir / "grid.h5", "--lo", "-0.1", "--hi", "1.1", "--n", "50"}));
  ok(run(mdn_command(0, {"predict", "--checkpoint", dir / "run/checkpoints/best.h5", "--input", dir / "grid.h5",
                         "--output", dir / "pred.h5"})));
  ok(run({py, tools + "plot.py", "density", dir / "pred.h5", dir / "grid.h5", dir / "train.h5", dir / "density.png"}));
  ok(run({py, tools + "plot.py", "curves", dir / "run/metrics.jsonl", dir / "curves.png"}));
  for (const char* png : {"density.png", "curves.png"}) {
    std::ifstream in(dir / png, std::ios::binary);
    char magic[8] = {};
    in.read(magic, 8);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG") << png;
    EXPECT_GT(fs::file_size(dir / png), 10000u) << png;
  }
}

}  // namespace
}  // namespace mdn::test
