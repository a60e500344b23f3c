// Not a test of mdn: a probe for test_mpi_harness, which runs it under mpiexec to show that the
// MPI GoogleTest main fails a test that fails on any one rank and prints the outcome once.
#include <mpi.h>

#include <gtest/gtest.h>

namespace {

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

TEST(Probe, PassesEverywhere) { EXPECT_EQ(1 + 1, 2); }
TEST(Probe, FailsOnLastRank) {
  EXPECT_NE(rank(), size() - 1) << "probe failure on the last rank";
}
TEST(Probe, FailsOnRankZero) { EXPECT_NE(rank(), 0) << "probe failure on rank zero"; }

}  // namespace
