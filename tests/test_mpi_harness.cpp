// The MPI GoogleTest main, exercised under real mpiexec runs of a probe binary.
#include <gtest/gtest.h>

#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

RunResult probe(int np, const std::string& filter) {
  auto cmd = mpi_launch(np);
  cmd.push_back(MDN_TEST_PROBE_BINARY);
  cmd.push_back("--gtest_filter=" + filter);
  return run(cmd, {60, {}, {}});
}

TEST(MpiHarness, PassingTestPassesAndPrintsOnce) {
  const RunResult r = probe(3, "Probe.PassesEverywhere");
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_EQ(count(r.out, "[ RUN      ] Probe.PassesEverywhere"), 1) << r.out;
  EXPECT_EQ(count(r.out, "[       OK ] Probe.PassesEverywhere"), 1) << r.out;
  EXPECT_EQ(count(r.out, "[  PASSED  ] 1 tests."), 1) << r.out;
}

TEST(MpiHarness, FailureOnLastRankFailsTheTest) {
  for (int np : {2, 3}) {
    const RunResult r = probe(np, "Probe.FailsOnLastRank");
    ASSERT_FALSE(r.timed_out);
    EXPECT_NE(r.exit_code, 0) << r.all();
    const std::string rank = std::to_string(np - 1);
    EXPECT_EQ(count(r.out, "[rank " + rank + "] "), 1) << r.out;
    EXPECT_EQ(count(r.out, "probe failure on the last rank"), 1) << r.out;
    EXPECT_EQ(count(r.out, "[  FAILED  ] Probe.FailsOnLastRank (") , 1) << r.out;
    EXPECT_NE(r.out.find("failed on rank " + rank + ")"), std::string::npos) << r.out;
    EXPECT_EQ(count(r.out, "[ RUN      ]"), 1) << r.out;
  }
}

TEST(MpiHarness, FailureOnRankZeroFailsTheTest) {
  const RunResult r = probe(2, "Probe.FailsOnRankZero:Probe.PassesEverywhere");
  ASSERT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0) << r.all();
  EXPECT_EQ(count(r.out, "probe failure on rank zero"), 1) << r.out;
  EXPECT_EQ(count(r.out, "[  PASSED  ] 1 tests."), 1) << r.out;
  EXPECT_EQ(count(r.out, "[  FAILED  ] 1 tests, listed below:"), 1) << r.out;
}

}  // namespace
}  // namespace mdn::test
