// The epoch's order (shuffle.hpp): a bijection of [0, N) for every N, its inverse, and an order
// that looks random (an identity or a rotation would pass a bijection test; not these).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mdn/kernels.hpp"
#include "mdn/shuffle.hpp"
#include "support/levels.hpp"

namespace mdn::test {
namespace {

TEST(IndexShuffle, IsABijectionWithItsInverseForManySizes) {
  for (std::uint64_t n : {1ULL, 2ULL, 3ULL, 4ULL, 5ULL, 7ULL, 8ULL, 9ULL, 31ULL, 32ULL, 33ULL, 97ULL, 1021ULL,
                          1024ULL, 4093ULL, 65537ULL, 100003ULL, 1ULL << 20}) {
    const IndexShuffle s(n, 42, 7);
    std::vector<char> hit(n, 0);
    for (std::uint64_t p = 0; p < n; ++p) {
      const std::uint64_t r = s(p);
      ASSERT_LT(r, n) << "N = " << n << ", position " << p;
      ASSERT_EQ(hit[r], 0) << "N = " << n << ": row " << r << " at two positions";
      hit[r] = 1;
      ASSERT_EQ(s.inverse(r), p) << "N = " << n << ", position " << p;
    }
  }
}

TEST(IndexShuffle, EveryLevelsLanesGiveTheSameOrderAsTheScalarCode) {
  // The epoch start walks positions through the level's compiled rounds (Kernels::shuffle_lanes),
  // 16 in lock step with refills; each result must be the scalar operator()'s, and inverse()'s.
  for (CpuLevel level : runnable_levels()) {
    const auto lanes = kernels<float>(level).shuffle_lanes;
    for (std::uint64_t n : {1ULL, 3ULL, 17ULL, 1000ULL, 65537ULL}) {
      const IndexShuffle s(n, 9, 4);
      const auto identity = [](std::uint64_t t) { return t; };
      ShuffleStream<false, decltype(identity)> forward(s, 0, n, identity, lanes);
      ShuffleStream<true, decltype(identity)> backward(s, 0, n, identity, lanes);
      std::uint64_t tag = 0, value = 0, count = 0;
      while (forward.next(tag, value)) {
        ASSERT_EQ(value, s(tag)) << to_string(level) << ", N = " << n;
        ++count;
      }
      EXPECT_EQ(count, n);
      count = 0;
      while (backward.next(tag, value)) {
        ASSERT_EQ(value, s.inverse(tag)) << to_string(level) << ", N = " << n;
        ++count;
      }
      EXPECT_EQ(count, n);
    }
  }
}

TEST(IndexShuffle, DependsOnSeedAndStreamOnly) {
  const std::uint64_t n = 1000;
  const IndexShuffle a(n, 1, 5), b(n, 1, 5), c(n, 2, 5), d(n, 1, 6);
  int same_c = 0, same_d = 0;
  for (std::uint64_t p = 0; p < n; ++p) {
    ASSERT_EQ(a(p), b(p));
    same_c += a(p) == c(p);
    same_d += a(p) == d(p);
  }
  // Independent orders agree at about one position in n.
  EXPECT_LT(same_c, 10);
  EXPECT_LT(same_d, 10);
}

TEST(IndexShuffle, LooksUniform) {
  // Where position 0 goes, over 20000 epochs of N = 10: each row about 2000 times (chi-square,
  // 9 degrees of freedom: 27.9 is its 0.999 quantile).
  const std::uint64_t n = 10, epochs = 20000;
  std::vector<double> count(n, 0.0);
  for (std::uint64_t e = 0; e < epochs; ++e) ++count[IndexShuffle(n, 3, e)(0)];
  double chi2 = 0;
  for (double c : count) chi2 += (c - 2000.0) * (c - 2000.0) / 2000.0;
  EXPECT_LT(chi2, 27.9);
  // Neighbouring positions land far apart: the mean |s(p+1) - s(p)| of a random order is N/3.
  const std::uint64_t big = 100000;
  const IndexShuffle s(big, 9, 1);
  double gap = 0;
  for (std::uint64_t p = 0; p + 1 < big; ++p)
    gap += std::abs(static_cast<double>(s(p + 1)) - static_cast<double>(s(p)));
  gap /= static_cast<double>(big - 1);
  EXPECT_NEAR(gap / static_cast<double>(big), 1.0 / 3.0, 0.01);
}

}  // namespace
}  // namespace mdn::test
