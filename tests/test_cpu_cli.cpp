// One portable binary on CPUs of every instruction-set level: real mdn processes natively and on
// CPUs emulated by qemu-user (Nehalem: no AVX; Haswell: AVX2 and FMA), alone and in one MPI job.
// A level gives the same bits on every CPU that runs it; the ranks of a job agree on one level;
// a requeued job keeps its checkpoint's level; a level some CPU lacks is one clear error.
#include <cstdlib>
#include <regex>

#include "mdn/cpu.hpp"
#include "support/h5_files.hpp"
#include "support/train_fixture.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Launcher = std::vector<std::string>;

const Launcher kNative = {};
const Launcher kNehalem = {"qemu-x86_64", "-cpu", "Nehalem"};  // SSE4.2, no AVX: x86-64
const Launcher kHaswell = {"qemu-x86_64", "-cpu", "Haswell"};  // AVX2, FMA, no AVX-512: x86-64-v3

class CpuCli : public TrainCli {
 protected:
  void SetUp() override {
    TrainCli::SetUp();
    if (run({"qemu-x86_64", "-version"}).exit_code != 0) {
      // The test set-up installs qemu-user; in CI as root its absence is a failure.
      if (std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true" && geteuid() == 0)
        FAIL() << "qemu-x86_64 not found (apt-get install qemu-user)";
      GTEST_SKIP() << "qemu-x86_64 not found (apt-get install qemu-user)";
    }
  }

  /// `mdn args` on one rank per launcher.
  RankedRun mdn(const std::vector<Launcher>& ranks, const std::vector<std::string>& args) {
    return run_mdn_ranks_on(dir_.path(), ranks, args, 300);
  }
  /// `mdn train` of the fixture's config on one rank per launcher.
  RankedRun train_on(const std::vector<Launcher>& ranks, const std::string& run_dir,
                     std::vector<std::string> sets = {}) {
    std::vector<std::string> args = {"train", "cfg.yaml", "--set", "run.dir=" + run_dir};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    return mdn(ranks, args);
  }

  json record(const std::string& run_dir, const std::string& kind) {
    for (const json& rec : metrics(run_dir))
      if (rec["kind"] == kind) return rec;
    return json();
  }

  std::vector<double> valid_nlls(const std::string& run_dir) {
    std::vector<double> v;
    for (const json& rec : metrics(run_dir))
      if (rec["kind"] == "valid") v.push_back(rec["valid_nll"].get<double>());
    return v;
  }

  void expect_same_state(const std::string& a, const std::string& b, int step = kSteps) {
    const Checkpoint x = final_checkpoint(a, step), y = final_checkpoint(b, step);
    EXPECT_EQ(x.params, y.params) << a << " vs " << b;
    ASSERT_EQ(x.optimizer_state.size(), y.optimizer_state.size());
    for (std::size_t i = 0; i < x.optimizer_state.size(); ++i)
      EXPECT_EQ(x.optimizer_state[i].second, y.optimizer_state[i].second) << a << " vs " << b;
    EXPECT_EQ(valid_nlls(a), valid_nlls(b)) << a << " vs " << b;
    EXPECT_EQ(x.cpu_level, y.cpu_level);
  }

  static void expect_code(const RankedRun& r, std::size_t np, const std::string& code) {
    EXPECT_FALSE(r.result.timed_out);
    EXPECT_EQ(r.codes, std::vector<std::string>(np, code)) << r.result.all();
  }
};

TEST_F(CpuCli, EmulatedCpusChooseTheirLevelAndMatchNativeRunsToTheBit) {
  struct Case {
    Launcher cpu;
    CpuLevel level;
  };
  for (const Case& c : {Case{kNehalem, CpuLevel::x86_64}, Case{kHaswell, CpuLevel::x86_64_v3}}) {
    const std::string name = to_string(c.level);
    SCOPED_TRACE(c.cpu.back());
    Launcher version = c.cpu;
    version.insert(version.end(), {mdn_binary(), "--version"});
    const RunResult v = run(version);
    ASSERT_EQ(v.exit_code, 0) << v.all();
    EXPECT_NE(v.out.find(": runs " + name + ";"), std::string::npos) << v.out;

    expect_code(train_on({c.cpu}, "emulated-" + name), 1, "0");
    const json start = record("emulated-" + name, "start");
    EXPECT_EQ(start["cpu"], name) << start.dump();
    EXPECT_EQ(start["cpu_reason"], "auto");
    expect_code(train_on({kNative}, "native-" + name, {"run.cpu=" + name}), 1, "0");
    EXPECT_EQ(record("native-" + name, "start")["cpu_reason"], "run.cpu");
    expect_same_state("emulated-" + name, "native-" + name);
    EXPECT_EQ(final_checkpoint("emulated-" + name).cpu_level, name);

    // Using the model: predict and sample (mdn's own log and cos in Box-Muller) agree too.
    const std::string ckpt = "native-" + name + "/checkpoints/step-00000022.h5";
    for (const auto& [launcher, tag] : {std::pair{c.cpu, "emulated"}, std::pair{kNative, "native"}}) {
      expect_code(mdn({launcher}, {"predict", "--checkpoint", ckpt, "--input", "valid.h5", "--output",
                                   std::string(tag) + "-p.h5", "--cpu", name}), 1, "0");
      expect_code(mdn({launcher}, {"sample", "--checkpoint", ckpt, "--input", "valid.h5", "--output",
                                   std::string(tag) + "-s.h5", "--samples", "5", "--cpu", name}), 1, "0");
    }
    for (const char* set : {"pi", "mu", "sigma", "mean", "variance"})
      EXPECT_EQ(read_array(dir_ / "emulated-p.h5", set).data, read_array(dir_ / "native-p.h5", set).data) << set;
    EXPECT_EQ(read_array(dir_ / "emulated-s.h5", "samples").data, read_array(dir_ / "native-s.h5", "samples").data);
  }
  // The comparison can fail: the levels round differently, so a run at another level differs.
  expect_code(train_on({kNative}, "native-other", {"run.cpu=x86-64-v3"}), 1, "0");
  EXPECT_NE(final_checkpoint("native-other").params, final_checkpoint("native-x86-64").params);
}

TEST_F(CpuCli, TheKernelTestsPassOnEmulatedCpus) {
  // test_levels on a CPU without AVX and on one without AVX-512: detection, the position of a
  // sample, denormals flushed (the emulator implements FTZ and DAZ as the hardware does).
  for (const Launcher& cpu : {kNehalem, kHaswell}) {
    Launcher cmd = cpu;
    cmd.push_back(std::string(MDN_TEST_BINARY_DIR) + "/test_levels");
    const RunResult r = run(cmd, {240, {}, {}});
    EXPECT_EQ(r.exit_code, 0) << cpu.back() << ":\n" << r.out.substr(r.out.size() > 3000 ? r.out.size() - 3000 : 0);
    EXPECT_NE(r.out.find("[  PASSED  ]"), std::string::npos) << r.out;
  }
}

TEST_F(CpuCli, AJobOnMixedCpusRunsTheBestLevelEveryRankSupports) {
  const RankedRun mixed = train_on({kNehalem, kNative}, "mixed");
  expect_code(mixed, 2, "0");
  const json start = record("mixed", "start");
  EXPECT_EQ(start["cpu"], "x86-64") << start.dump();
  EXPECT_EQ(start["cpu_common"], "x86-64");
  EXPECT_EQ(start["ranks"], 2);
  EXPECT_NE(mixed.result.out.find("cpu: x86-64 (auto: the best level all 2 ranks support)"), std::string::npos)
      << mixed.result.out;
  expect_code(train_on({kNative}, "one", {"run.cpu=x86-64"}), 1, "0");
  expect_same_state("mixed", "one");
}

TEST_F(CpuCli, ALevelSomeRankLacksIsOneErrorOnEveryRankAndNothingIsWritten) {
  // Alone on a CPU without AVX.
  const RankedRun alone = train_on({kNehalem}, "lacking", {"run.cpu=x86-64-v3"});
  expect_code(alone, 1, "2");
  EXPECT_NE(alone.result.err.find("--set run.cpu=x86-64-v3: run.cpu: x86-64-v3 needs instructions that the CPU of "
                                  "rank 0 (host "),
            std::string::npos)
      << alone.result.err;
  EXPECT_NE(alone.result.err.find("it supports up to x86-64."), std::string::npos) << alone.result.err;
  EXPECT_FALSE(fs::exists(dir_ / "lacking"));
  // In a job whose second rank lacks it: one message (from rank 0), exit 2 on both ranks.
  const RankedRun job = train_on({kNative, kNehalem}, "lacking2", {"run.cpu=x86-64-v3"});
  expect_code(job, 2, "2");
  EXPECT_EQ(count(job.result.err, "mdn: error:"), 1) << job.result.err;
  EXPECT_NE(job.result.err.find("the CPU of rank 1 (host "), std::string::npos) << job.result.err;
  EXPECT_NE(job.result.err.find("ranks lacking it: 1. Use auto (here x86-64)"), std::string::npos) << job.result.err;
  EXPECT_FALSE(fs::exists(dir_ / "lacking2"));
  // mdn check refuses it the same way; eval's --cpu too.
  const RankedRun check = mdn({kNative, kNehalem}, {"check", "cfg.yaml", "--set", "run.cpu=x86-64-v3"});
  expect_code(check, 2, "2");
  expect_code(train_on({kNative}, "model", {"train.epochs=1"}), 1, "0");
  const RankedRun eval = mdn({kNehalem}, {"eval", "--checkpoint", "model/checkpoints/step-00000011.h5", "--data",
                                          "valid.h5", "--cpu", "x86-64-v3"});
  expect_code(eval, 1, "2");
  EXPECT_NE(eval.result.err.find("--cpu: x86-64-v3 needs instructions"), std::string::npos) << eval.result.err;
}

TEST_F(CpuCli, AResumeContinuesOnAnotherLevelOnlyWhenSomeRankCannotRunTheCheckpoints) {
  if (best_built_level() == CpuLevel::x86_64) GTEST_SKIP() << "this CPU runs only x86-64";
  const std::string best = to_string(best_built_level());
  // First epoch natively at this CPU's best level, the second on a CPU without AVX.
  expect_code(train_on({kNative}, "moved", {"train.epochs=1"}), 1, "0");
  EXPECT_EQ(final_checkpoint("moved", 11).cpu_level, best);
  const RankedRun resumed = train_on({kNehalem}, "moved");
  expect_code(resumed, 1, "0");
  EXPECT_NE(resumed.result.err.find("mdn: warning: the checkpoint was trained at level " + best +
                                    ", which not every rank can run: continuing at x86-64"),
            std::string::npos)
      << resumed.result.err;
  const json rec = record("moved", "resume");
  EXPECT_EQ(rec["cpu_then"], best) << rec.dump();
  EXPECT_EQ(rec["cpu"], "x86-64");
  EXPECT_EQ(final_checkpoint("moved").cpu_level, "x86-64");
}

TEST_F(CpuCli, ModelsFromOlderVersionsStillLoadButTheirRunsDoNotResume) {
  // A checkpoint of format version 1 (before levels were recorded), written by mdn 0.1.0, whose
  // epochs were ordered by the former permutation (Fisher-Yates).
  const std::string src = std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/v1";
  fs::create_directories(dir_ / "old/checkpoints");
  fs::copy_file(src + "/step-00000002.h5", dir_ / "old/checkpoints/step-00000002.h5");
  fs::copy_file(src + "/data.h5", dir_ / "data.h5");
  fs::copy_file(src + "/c.yaml", dir_ / "old.yaml");
  const RankedRun inspect = mdn({kNative}, {"inspect", "old/checkpoints/step-00000002.h5"});
  expect_code(inspect, 1, "0");
  EXPECT_NE(inspect.result.out.find("format      mdn-checkpoint, version 1"), std::string::npos) << inspect.result.out;
  EXPECT_NE(inspect.result.out.find("cpu level   not recorded (format version 1)"), std::string::npos);
  EXPECT_NE(inspect.result.out.find("epoch order fisher-yates (format versions 1 and 2)"), std::string::npos);
  const RankedRun eval = mdn({kNative}, {"eval", "--checkpoint", "old/checkpoints/step-00000002.h5", "--data", "data.h5"});
  expect_code(eval, 1, "0");
  const RankedRun resumed = mdn({kNative, kNative}, {"train", "old.yaml", "--set", "run.dir=old", "--set", "train.max_steps=4"});
  expect_code(resumed, 2, "2");
  EXPECT_EQ(count(resumed.result.err, "mdn: error: checkpoint 'old/checkpoints/step-00000002.h5' comes from a run whose "
                                      "epochs were ordered by the fisher-yates permutation; this mdn orders them by "
                                      "feistel6"),
            1)
      << resumed.result.err;
  EXPECT_FALSE(fs::exists(dir_ / "old/checkpoints/step-00000004.h5"));
}

TEST(CpuIsolation, NoCodeOutsideTheV3AndV4KernelsUsesTheirInstructions) {
  // The binary's machine code, function by function: every instruction that needs AVX, AVX2,
  // FMA, AVX-512, BMI or MOVBE must sit in a function of the x86-64-v3 or -v4 kernels (named
  // __mdn_x86_64_v3_... and __mdn_x86_64_v4_... by tools/isolate_level.cmake). Anything else runs
  // on every CPU: one such instruction outside them is an illegal instruction on some node.
  const RunResult dis = run({"objdump", "-d", "--no-show-raw-insn", mdn_binary()}, {120, {}, {}});
  ASSERT_EQ(dis.exit_code, 0) << dis.err.substr(0, 2000);
  const std::regex function(R"(^[0-9a-f]+ <(.+)>:$)");
  const std::regex needs_more(
      R"(^\s+[0-9a-f]+:\s+(v[a-z0-9]+|k[a-z]+[bwdq]?|andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|movbe|lzcnt)\s)");
  std::istringstream in(dis.out);
  std::string current, line;
  int v3_functions = 0, v4_functions = 0;
  std::vector<std::string> offenders;
  bool allowed = false;
  for (std::size_t n = 0; std::getline(in, line); ++n) {
    std::smatch m;
    if (std::regex_match(line, m, function)) {
      current = m[1];
      allowed = current.rfind("__mdn_x86_64_v3_", 0) == 0 || current.rfind("__mdn_x86_64_v4_", 0) == 0;
      v3_functions += current.rfind("__mdn_x86_64_v3_", 0) == 0;
      v4_functions += current.rfind("__mdn_x86_64_v4_", 0) == 0;
      continue;
    }
    if (!allowed && line.find("%ymm") == std::string::npos && line.find("%zmm") == std::string::npos &&
        !std::regex_search(line, needs_more))
      continue;
    if (!allowed && (offenders.empty() || offenders.back().rfind(current, 0) != 0))
      offenders.push_back(current + ": " + line);
  }
  EXPECT_TRUE(offenders.empty()) << offenders.size() << " functions outside the v3/v4 kernels use their instructions, "
                                 << "e.g.\n" << (offenders.empty() ? "" : offenders.front());
  if (is_built(CpuLevel::x86_64_v3)) {
    EXPECT_GT(v3_functions, 10);
  }
  if (is_built(CpuLevel::x86_64_v4)) {
    EXPECT_GT(v4_functions, 10);
  }
}

}  // namespace
}  // namespace mdn::test
