#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "mdn/model.hpp"
#include "mdn/random.hpp"

namespace mdn {
namespace {

TEST(Random, IsAPureFunctionOfSeedStreamAndCounter) {
  EXPECT_EQ(rng::bits(1, 2, 3), rng::bits(1, 2, 3));
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(2, 2, 3));
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(1, 3, 3));
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(1, 2, 4));
  // High halves of seed, stream and counter matter too.
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(1 | (1ULL << 40), 2, 3));
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(1, 2 | (1ULL << 40), 3));
  EXPECT_NE(rng::bits(1, 2, 3), rng::bits(1, 2, 3 | (1ULL << 40)));
}

TEST(Random, MatchesPhiloxKnownAnswer) {
  // Random123's known-answer vector for philox4x32_10 with counter and key all zero:
  // {6627e8d5, e169c58d, bc57ac4c, 9b00dbd8}.
  EXPECT_EQ(rng::bits(0, 0, 0), 0xe169c58d6627e8d5ULL);
}

TEST(Random, UniformMomentsAndRange) {
  rng::Sequence s(7, rng::kTestData);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = s.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
  }
  // Mean 1/2 (sd of the estimate 0.29/sqrt(n) = 6.5e-4), variance 1/12.
  EXPECT_NEAR(sum / n, 0.5, 4e-3);
  EXPECT_NEAR(sum2 / n - (sum / n) * (sum / n), 1.0 / 12, 2e-3);
}

TEST(Random, BelowIsUnbiasedOverSmallRange) {
  rng::Sequence s(11, rng::kTestData);
  std::vector<int> hist(6, 0);
  const int n = 60000;
  for (int i = 0; i < n; ++i) ++hist[s.below(6)];
  for (int h : hist) EXPECT_NEAR(h, n / 6, 5 * std::sqrt(n / 6.0));  // 5 sigma
  EXPECT_EQ(s.below(1), 0u);
}

TEST(Random, NormalMoments) {
  rng::Sequence s(13, rng::kTestData);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = s.normal();
    sum += z;
    sum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.015);  // 6.7 sigma of the estimate
  EXPECT_NEAR(sum2 / n, 1.0, 0.02);
}

TEST(Init, DeterministicBoundedAndSeedDependent) {
  ModelSpec spec;
  spec.input_dim = 4;
  spec.output_dim = 2;
  spec.components = 3;
  spec.hidden = {16, 9};
  const Layout layout(spec);
  Vec<float> a(layout.size()), b(layout.size()), c(layout.size());
  initialize(a.data(), layout, 42);
  initialize(b.data(), layout, 42);
  initialize(c.data(), layout, 43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const Slot& s : layout.slots()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(layout.weight(s.layer).cols));
    const auto seg = a.segment(s.offset, s.size());
    EXPECT_LE(seg.cwiseAbs().maxCoeff(), bound) << s.name;
    EXPECT_GT(seg.cwiseAbs().maxCoeff(), 0.5 * bound) << s.name;  // it is spread, not all zero
  }
  // float and double initialisations agree (the float one is the double one rounded).
  Vec<double> d(layout.size());
  initialize(d.data(), layout, 42);
  EXPECT_EQ(d.cast<float>(), a);
}

TEST(Layout, SlotsTileTheBufferInLayerOrder) {
  ModelSpec spec;
  spec.input_dim = 3;
  spec.output_dim = 2;
  spec.components = 4;
  spec.hidden = {5, 6};
  const Layout layout(spec);
  ASSERT_EQ(layout.slots().size(), 6u);
  EXPECT_EQ(layout.slots()[0].name, "layers/0/weight");
  EXPECT_EQ(layout.slots()[5].name, "layers/2/bias");
  EXPECT_EQ(layout.weight(2).rows, 4 * (1 + 2 * 2));
  EXPECT_EQ(layout.weight(2).cols, 6);
  EXPECT_TRUE(layout.weight(1).decays);
  EXPECT_FALSE(layout.bias(1).decays);
  Index expected = 5 * 3 + 5 + 6 * 5 + 6 + 20 * 6 + 20;
  EXPECT_EQ(layout.size(), expected);
}

}  // namespace
}  // namespace mdn
