// The embedding library as another project uses it: `cmake --install` of this build into a
// temporary prefix, a consumer project (tests/consumer) configured with find_package(mdn) and
// built against the installed tree, and its numbers compared with `mdn predict`, `mdn eval` and
// `mdn sample` on the same rows; the README's example is compiled and run too.
#include <sstream>

#include "support/train_fixture.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

/// The consumer's output: tag -> row -> numbers.
using Lines = std::map<std::string, std::map<std::size_t, std::vector<double>>>;

Lines parse(const std::string& out) {
  Lines lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    std::string tag;
    std::size_t row = 0;
    l >> tag;
    if (tag == "model") continue;
    l >> row;
    std::vector<double>& v = lines[tag][row];
    for (double d; l >> d;) v.push_back(d);
  }
  return lines;
}

class Embed : public TrainCli {
 protected:
  /// Installs this build and builds the consumer (and the README's example) against it, once.
  static void SetUpTestSuite() {
    prefix_ = std::make_unique<TempDir>();
    const std::string build = fs::path(MDN_TEST_BINARY_DIR).parent_path();
    const std::string src = std::string(MDN_TEST_SOURCE_DIR);
    RunResult r = run({"cmake", "--install", build, "--prefix", *prefix_ / "prefix"}, {300, {}, {}});
    ASSERT_EQ(r.exit_code, 0) << r.all();
    // The README's example, as a file of the consumer project.
    std::ifstream readme(src + "/README.md");
    const std::string text((std::istreambuf_iterator<char>(readme)), std::istreambuf_iterator<char>());
    const std::string begin = "<!-- embed-example -->\n```cpp\n";
    const auto b = text.find(begin);
    ASSERT_NE(b, std::string::npos) << "README has no embedding example";
    const auto e = text.find("```", b + begin.size());
    std::ofstream(*prefix_ / "example.cpp") << text.substr(b + begin.size(), e - b - begin.size());
    r = run({"cmake", "-S", src + "/tests/consumer", "-B", *prefix_ / "consumer", "-DCMAKE_PREFIX_PATH=" + (*prefix_ / "prefix"),
             "-DMDN_EXAMPLE=" + (*prefix_ / "example.cpp")},
            {300, {}, {}});
    ASSERT_EQ(r.exit_code, 0) << r.all();
    r = run({"cmake", "--build", *prefix_ / "consumer", "-j", "2"}, {300, {}, {}});
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
  static void TearDownTestSuite() { prefix_.reset(); }

  /// Writes the rows of valid.h5 as the consumer's text file.
  std::string write_rows() {
    const Array x = read_array(dir_ / "valid.h5", "x"), y = read_array(dir_ / "valid.h5", "y");
    const std::size_t N = x.dims[0];
    std::ofstream out(dir_ / "rows.txt");
    out.precision(9);
    out << N << " 2 2\n";
    for (std::size_t i = 0; i < N; ++i) out << x(i, 0) << " " << x(i, 1) << " " << y(i, 0) << " " << y(i, 1) << "\n";
    return dir_ / "rows.txt";
  }

  static std::unique_ptr<TempDir> prefix_;
};
std::unique_ptr<TempDir> Embed::prefix_;

TEST_F(Embed, AnInstalledConsumerGetsWhatPredictEvalAndSampleGive) {
  for (const std::string covariance : {"diagonal", "full"}) {
    SCOPED_TRACE(covariance);
    const std::string run_dir = "run-" + covariance;
    expect_ok(train(2, run_dir, {"model.covariance=" + covariance}), 2);
    const std::string ckpt = dir_ / (run_dir + "/checkpoints/step-00000022.h5");
    expect_ok(run_mdn_ranks(dir_.path(), 2, {"predict", "--checkpoint", ckpt, "--input", "valid.h5", "--output", "p.h5",
                                             "--quantiles", "0.05,0.5,0.95"}),
              2);
    expect_ok(run_mdn_ranks(dir_.path(), 2, {"sample", "--checkpoint", ckpt, "--input", "valid.h5", "--output", "s.h5",
                                             "--samples", "3", "--seed", "17"}),
              2);
    const RankedRun ev = run_mdn_ranks(dir_.path(), 1, {"eval", "--checkpoint", ckpt, "--data", "valid.h5", "--json",
                                                        "--hdr-samples", "0"});
    expect_ok(ev, 1);
    const double nll = json::parse(ev.result.out)["nll"].get<double>();

    // The consumer runs without mpirun and without any MPI in its environment.
    const RunResult c = run({*prefix_ / "consumer/consumer", ckpt, write_rows(), "17"}, {120, {}, {}});
    ASSERT_EQ(c.exit_code, 0) << c.all();
    EXPECT_NE(c.out.find(covariance == "full" ? "model 2 2 3 1 " : "model 2 2 3 0 "), std::string::npos) << c.out.substr(0, 200);
    const Lines got = parse(c.out);
    const std::size_t N = 301, K = 3, L = 2;
    const Array pi = read_array(dir_ / "p.h5", "pi"), mu = read_array(dir_ / "p.h5", "mu"),
                sigma = read_array(dir_ / "p.h5", "sigma"), q = read_array(dir_ / "p.h5", "quantiles"),
                s = read_array(dir_ / "s.h5", "samples");
    double sum_logp = 0;
    for (std::size_t i = 0; i < N; ++i) {
      // Model::mixtures over the file's rows: predict's numbers, bit for bit.
      std::vector<double> want;
      for (std::size_t k = 0; k < K; ++k) want.push_back(pi(i, k));
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t l = 0; l < L; ++l) want.push_back(mu(i, k, l));
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t l = 0; l < L; ++l) want.push_back(sigma(i, k, l));
      if (covariance == "full") {
        const Array cov = read_array(dir_ / "p.h5", "covariance");
        for (std::size_t k = 0; k < K * L * L; ++k) want.push_back(cov.data[i * K * L * L + k]);
      }
      const std::vector<double>& all = got.at("mix").at(i);
      ASSERT_EQ(all, want) << "row " << i;
      // One row alone: a micro-batch of one takes other products than predict's blocks, so the
      // float network's rounding differs (observed: 1e-8 relative); everything computed from
      // it agrees to that rounding.
      const std::vector<double>& one = got.at("one").at(i);
      ASSERT_EQ(one.size(), want.size());
      for (std::size_t v = 0; v < want.size(); ++v) ASSERT_NEAR(one[v], want[v], 1e-5 * (1 + std::abs(want[v]))) << i;
      for (std::size_t a = 0; a < 3; ++a)
        for (std::size_t l = 0; l < L; ++l) {
          // Compared as probabilities under predict's mixture (where the CDF is flat between
          // components, a rounding of the weights moves a quantile far).
          const double x = got.at("quantiles").at(i)[a * L + l];
          double F = 0;
          for (std::size_t k = 0; k < K; ++k) F += pi(i, k) * 0.5 * std::erfc(-(x - mu(i, k, l)) / (sigma(i, k, l) * M_SQRT2));
          const double level = a == 0 ? 0.05 : (a == 1 ? 0.5 : 0.95);
          EXPECT_NEAR(F, level, 1e-5) << "row " << i;
        }
      for (std::size_t d = 0; d < 3; ++d)
        for (std::size_t l = 0; l < L; ++l)
          EXPECT_NEAR(got.at("sample").at(i)[d * L + l], s(i, d, l), 1e-5 * (1 + std::abs(s(i, d, l)))) << "row " << i;
      sum_logp += got.at("logp").at(i)[0];
    }
    EXPECT_NEAR(-sum_logp / N, nll, 1e-6 * (1 + std::abs(nll)));

    // The README's example runs on the checkpoint.
    const RunResult ex = run({*prefix_ / "consumer/readme_example", ckpt}, {60, {}, {}});
    EXPECT_EQ(ex.exit_code, 0) << ex.all();
    EXPECT_NE(ex.out.find("log p(y | x) = "), std::string::npos) << ex.out;
  }
}

TEST_F(Embed, ABadCheckpointIsAnExceptionNamingTheFile) {
  std::ofstream(dir_ / "bad.h5") << "not a checkpoint";
  const RunResult c = run({*prefix_ / "consumer/consumer", dir_ / "bad.h5", write_rows(), "1"}, {60, {}, {}});
  EXPECT_EQ(c.exit_code, 1) << c.all();
  EXPECT_NE(c.err.find("consumer: checkpoint '" + (dir_ / "bad.h5") + "'"), std::string::npos) << c.err;
}

}  // namespace
}  // namespace mdn::test
