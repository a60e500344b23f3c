// Checks of the Comm contract against closed forms, shared by the SelfComm and MpiComm tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/error.hpp"

namespace mdn::test {

inline void check_sum_int64(Comm& c) {
  const std::int64_t r = c.rank();
  const std::int64_t P = c.size();
  // 3 * 2^52 + odd is beyond double's 53-bit mantissa: a float path would round it.
  std::vector<std::int64_t> v = {(std::int64_t{3} << 52) + 2 * r + 1, -(r + 1) * 7,
                                 r == 0 ? std::numeric_limits<std::int64_t>::max() - P : 1};
  c.allreduce(v.data(), v.size(), ReduceOp::sum);
  EXPECT_EQ(v[0], P * (std::int64_t{3} << 52) + P * (P - 1) + P);
  EXPECT_EQ(v[1], -7 * P * (P + 1) / 2);
  EXPECT_EQ(v[2], std::numeric_limits<std::int64_t>::max() - 1);
}

inline void check_sum_float(Comm& c) {
  const int r = c.rank();
  const int P = c.size();
  std::vector<float> f(1000);
  std::vector<double> d(1000);
  for (std::size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(r) + 0.25f * static_cast<float>(i);
    d[i] = -0.5 * r + 1e-3 * static_cast<double>(i);
  }
  c.allreduce(f.data(), f.size(), ReduceOp::sum);
  c.allreduce(d.data(), d.size(), ReduceOp::sum);
  for (std::size_t i = 0; i < f.size(); ++i) {
    // Exactly representable partial sums: the result is exact in any order.
    ASSERT_EQ(f[i], static_cast<float>(P * (P - 1) / 2) + 0.25f * static_cast<float>(P * i)) << i;
    ASSERT_NEAR(d[i], -0.25 * P * (P - 1) + 1e-3 * static_cast<double>(i) * P, 1e-12) << i;
  }
}

inline void check_max_min(Comm& c) {
  const int r = c.rank();
  const int P = c.size();
  EXPECT_EQ(c.max(3.5 * r - 1.0), 3.5 * (P - 1) - 1.0);
  EXPECT_EQ(c.min(3.5 * r - 1.0), -1.0);
  EXPECT_EQ(c.max<std::int64_t>(r == P - 1 ? (std::int64_t{1} << 62) : r), std::int64_t{1} << 62);
  EXPECT_EQ(c.min<std::int32_t>(100 - r), 100 - (P - 1));
  std::vector<std::uint64_t> u = {static_cast<std::uint64_t>(r), ~std::uint64_t{0} - r};
  c.allreduce(u.data(), u.size(), ReduceOp::max);
  EXPECT_EQ(u[0], static_cast<std::uint64_t>(P - 1));
  EXPECT_EQ(u[1], ~std::uint64_t{0});
}

inline void check_broadcast(Comm& c) {
  for (int root : {0, c.size() - 1}) {
    std::vector<double> v(5, -1.0);
    if (c.rank() == root)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = 10.0 * root + static_cast<double>(i);
    c.broadcast(v.data(), v.size(), root);
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], 10.0 * root + static_cast<double>(i));

    std::string s = c.rank() == root ? std::string(100000, 'x') + "from " + std::to_string(root)
                                     : std::string("stale");
    c.broadcast(s, root);
    EXPECT_EQ(s, std::string(100000, 'x') + "from " + std::to_string(root));
  }
  // A buffer large enough to leave the eager protocol.
  std::vector<double> big(3'000'000, c.rank() == 0 ? 2.5 : 0.0);
  c.broadcast(big.data(), big.size(), 0);
  EXPECT_EQ(big.front(), 2.5);
  EXPECT_EQ(big.back(), 2.5);
}

inline void check_settle_without_failure(Comm& c) {
  EXPECT_NO_THROW(c.settle(nullptr));
  EXPECT_NO_THROW(c.collectively([] {}));
  EXPECT_EQ(c.sum(1), c.size());  // the communicator is still in step
}

inline void check_settle_rank_local_failure(Comm& c) {
  const int last = c.size() - 1;
  try {
    c.collectively([&] {
      if (c.rank() == last) throw input_error("data/train.h5: dataset 'x': NaN in row {}", 7);
    });
    ADD_FAILURE() << "no error on rank " << c.rank();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    EXPECT_TRUE(e.collective());
    EXPECT_STREQ(e.what(), "data/train.h5: dataset 'x': NaN in row 7");
  }
  EXPECT_EQ(c.sum(1), c.size());  // the communicator is still in step
}

inline void check_settle_lowest_rank_wins(Comm& c) {
  // Rank 0 fails with a foreign exception, the others with an mdn::Error: rank 0's is reported.
  try {
    c.collectively([&] {
      if (c.rank() == 0) throw std::logic_error("broken invariant");
      throw run_error("disk full on rank {}", c.rank());
    });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_TRUE(e.collective());
    EXPECT_STREQ(e.what(), "internal error: broken invariant");
  }
}

}  // namespace mdn::test
