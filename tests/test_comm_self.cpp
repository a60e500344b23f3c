#include "support/comm_cases.hpp"

namespace mdn::test {
namespace {

TEST(SelfComm, Identity) {
  SelfComm c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_TRUE(c.is_root());
}
TEST(SelfComm, SumInt64) { SelfComm c; check_sum_int64(c); }
TEST(SelfComm, SumFloat) { SelfComm c; check_sum_float(c); }
TEST(SelfComm, MaxMin) { SelfComm c; check_max_min(c); }
TEST(SelfComm, Broadcast) { SelfComm c; check_broadcast(c); }
TEST(SelfComm, SettleWithoutFailure) { SelfComm c; check_settle_without_failure(c); }
TEST(SelfComm, SettleFailure) { SelfComm c; check_settle_rank_local_failure(c); }
TEST(SelfComm, SettleForeignException) { SelfComm c; check_settle_lowest_rank_wins(c); }

}  // namespace
}  // namespace mdn::test
