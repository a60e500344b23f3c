// The mdn executable's front door: --version, --help, bad flags, alone and under mpiexec.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "mdn/build_info.hpp"
#include "support/process.hpp"

namespace mdn::test {
namespace {

TEST(Cli, VersionPrintsTheBuildReport) {
  const RunResult r = run(mdn_command(0, {"--version"}));
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_EQ(r.out.rfind(std::string("mdn ") + version(), 0), 0u) << r.out;
  EXPECT_NE(r.out.find("HDF5:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MPI:"), std::string::npos) << r.out;
}

TEST(Cli, HelpListsUsage) {
  const RunResult r = run(mdn_command(0, {"--help"}));
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--version"), std::string::npos) << r.out;
}

TEST(Cli, UnknownFlagIsAnInputErrorOnEveryRank) {
  const RunResult alone = run(mdn_command(0, {"--no-such-flag"}));
  EXPECT_EQ(alone.exit_code, 2) << alone.all();
  EXPECT_NE(alone.err.find("--no-such-flag"), std::string::npos) << alone.all();

  const RunResult three = run(mdn_command(3, {"--no-such-flag"}));
  EXPECT_FALSE(three.timed_out);
  EXPECT_EQ(three.exit_code, 2) << three.all();
  EXPECT_EQ(count(three.err, "--no-such-flag"), 1) << "printed once: " << three.all();
}

TEST(Cli, UnderMpiexecRankZeroAlonePrints) {
  const RunResult r = run(mdn_command(3, {"--version"}));
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_EQ(count(r.out, std::string("mdn ") + version() + " ("), 1) << r.out;
}

TEST(Cli, NoCommandIsAnInputError) {
  const RunResult r = run(mdn_command(0, {}));
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_NE(r.err.find("mdn --help"), std::string::npos) << r.all();
}

TEST(Cli, RankZeroWritesTheExitCodeToMdnExitFile) {
  // For job scripts whose launcher may lose the code (jobs/train.sbatch).
  TempDir dir;
  const std::string file = dir.path() + "/exit";
  for (const auto& [args, code] : {std::pair<std::vector<std::string>, std::string>{{"--version"}, "0\n"},
                                   {{"--no-such-flag"}, "2\n"}}) {
    std::remove(file.c_str());
    const RunResult r = run(mdn_command(2, args), {60, {{"MDN_EXIT_FILE", file}}, {}});
    std::ifstream in(file);
    const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, code) << r.all();
    EXPECT_FALSE(std::filesystem::exists(file + ".tmp"));
  }
  // A file that cannot be written: a warning, and the exit code is unchanged.
  const RunResult r = run(mdn_command(0, {"--version"}), {60, {{"MDN_EXIT_FILE", dir.path() + "/no/such/dir/exit"}}, {}});
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.err.find("cannot write the exit code to"), std::string::npos) << r.all();
}

}  // namespace
}  // namespace mdn::test
