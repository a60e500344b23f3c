// Comm over real MPI processes (ctest runs this under mpiexec -n 1, 2 and 3).
#include <mpi.h>

#include "mdn/mpi_comm.hpp"
#include "support/comm_cases.hpp"

namespace mdn::test {
namespace {

TEST(MpiComm, RankAndSize) {
  MpiComm c(MPI_COMM_WORLD);
  int r = -1;
  int s = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  EXPECT_EQ(c.rank(), r);
  EXPECT_EQ(c.size(), s);
}
TEST(MpiComm, SumInt64) { MpiComm c(MPI_COMM_WORLD); check_sum_int64(c); }
TEST(MpiComm, SumFloat) { MpiComm c(MPI_COMM_WORLD); check_sum_float(c); }
TEST(MpiComm, MaxMin) { MpiComm c(MPI_COMM_WORLD); check_max_min(c); }
TEST(MpiComm, Broadcast) { MpiComm c(MPI_COMM_WORLD); check_broadcast(c); }
TEST(MpiComm, SettleWithoutFailure) { MpiComm c(MPI_COMM_WORLD); check_settle_without_failure(c); }
TEST(MpiComm, SettleRankLocalFailure) {
  MpiComm c(MPI_COMM_WORLD);
  check_settle_rank_local_failure(c);
}
TEST(MpiComm, SettleLowestRankWins) { MpiComm c(MPI_COMM_WORLD); check_settle_lowest_rank_wins(c); }

TEST(MpiComm, FailedCallBecomesErrorWithMpiMessage) {
  MpiComm c(MPI_COMM_WORLD);
  int x = 0;
  try {
    c.broadcast(&x, 1, c.size());  // no such root: MPI reports MPI_ERR_ROOT on every rank
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("MPI_Ibcast failed: MPI_ERR_ROOT"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c.sum(1), c.size());  // the communicator still works
}

TEST(MpiComm, CommunicatorsAreIndependent) {
  MpiComm a(MPI_COMM_WORLD);
  MpiComm b(MPI_COMM_WORLD);
  EXPECT_NE(a.handle(), b.handle());
  EXPECT_EQ(a.sum(a.rank()), b.sum(b.rank()));
}

}  // namespace
}  // namespace mdn::test
