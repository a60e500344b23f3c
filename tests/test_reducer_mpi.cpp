// The step's gradient reduction under mpiexec -n 1, 2, 3: exact mode gives the same bits for any
// rank count and placement and meets its precision bound; flags and non-finite values reach
// every rank.
#include <mpi.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mdn/clip.hpp"
#include "mdn/mpi_comm.hpp"
#include "mdn/reducer.hpp"
#include "mdn/random.hpp"
#include "support/levels.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

ModelSpec spec() {
  ModelSpec s;
  s.input_dim = 3;
  s.output_dim = 2;
  s.components = 2;
  s.hidden = {7};
  return s;
}

/// Micro-batch g's gradient: magnitudes spread over 2^-20 .. 2^10 per slot, signs mixed.
void fill(float* g, const Layout& layout, Index g_index) {
  rng::Sequence r(seed(), rng::kTestData + 50 + static_cast<std::uint64_t>(g_index));
  for (const Slot& s : layout.slots()) {
    const int scale = static_cast<int>(s.offset % 31) - 20;
    for (Index i = 0; i < s.size(); ++i)
      g[s.offset + i] = static_cast<float>(std::ldexp(2 * r.uniform() - 1, scale + static_cast<int>(r.below(4))));
  }
}

struct Reduced {
  Vec<float> mean;
  std::vector<double> sums;
  GradientReducer::Result result;
  std::string route;
};

/// Reduces M micro-batches of `rows` rows each, micro-batch g held by rank owner(g).
template <class Owner>
Reduced reduce(Comm& comm, Reduction mode, Index M, Owner owner, StepFlags flags = {}, Index poison = -1,
               float poison_value = std::numeric_limits<float>::infinity(), CpuLevel level = best_built_level(),
               const IntegerSumOptions& sum = {}) {
  const Layout layout(spec());
  Index local = 0;
  for (Index g = 0; g < M; ++g) local += owner(g) == comm.rank();
  GradientReducer red(layout, mode, std::max<Index>(local, 1), comm, level, Faults::none(), sum);
  Index k = 0;
  for (Index g = 0; g < M; ++g) {
    if (owner(g) != comm.rank()) continue;
    float* grad = red.gradient(k);
    fill(grad, layout, g);
    if (g == poison) grad[3] = poison_value;
    red.record(k, 0.25 * static_cast<double>(g) - 3.0, 10 + g % 3);
    ++k;
  }
  Reduced out;
  out.route = red.route();
  out.mean.resize(layout.size());
  std::int64_t rows = 0;
  for (Index g = 0; g < M; ++g) rows += 10 + g % 3;
  out.result = red.reduce(local, M, rows, out.mean.data(), flags);
  if (out.result.finite) std::copy_n(out.result.mean, layout.size(), out.mean.data());
  if (mode == Reduction::exact && out.result.finite)
    out.sums = red.exact_sums();
  return out;
}

TEST(Reducer, ExactIsIdenticalForAnyRankCountAndPlacement) {
  MpiComm comm(MPI_COMM_WORLD);
  SelfComm self;
  const Index M = 11;
  const int P = comm.size();
  const Reduced dealt = reduce(comm, Reduction::exact, M, [&](Index g) { return static_cast<int>(g % P); });
  const Reduced last = reduce(comm, Reduction::exact, M, [&](Index) { return P - 1; });
  const Reduced blocks = reduce(comm, Reduction::exact, M, [&](Index g) { return static_cast<int>(g * P / M); });
  const Reduced one = reduce(self, Reduction::exact, M, [](Index) { return 0; });
  EXPECT_EQ(dealt.mean, one.mean);
  EXPECT_EQ(last.mean, one.mean);
  EXPECT_EQ(blocks.mean, one.mean);
  EXPECT_EQ(dealt.sums, one.sums);
  EXPECT_EQ(dealt.result.rows, one.result.rows);
  EXPECT_EQ(dealt.result.loss_sum, one.result.loss_sum);
  EXPECT_EQ(dealt.result.sum_squares, one.result.sum_squares);  // the clip's norm
  EXPECT_EQ(last.result.sum_squares, one.result.sum_squares);
  EXPECT_EQ(blocks.result.sum_squares, one.result.sum_squares);
  EXPECT_TRUE(dealt.result.finite);
  // Quantisation is exact integer work: every level's kernels give the same bits.
  for (CpuLevel level : runnable_levels()) {
    const Reduced at = reduce(comm, Reduction::exact, M, [&](Index g) { return static_cast<int>(g % P); }, {}, -1,
                              0.0f, level);
    EXPECT_EQ(at.mean, one.mean) << to_string(level);
    EXPECT_EQ(at.sums, one.sums) << to_string(level);
  }
}

TEST(Reducer, ExactIsIdenticalThroughSharedMemoryAndThroughMpi) {
  MpiComm comm(MPI_COMM_WORLD);
  const Index M = 9;
  const int P = comm.size();
  auto dealt = [&](Index g) { return static_cast<int>(g % P); };
  const Reduced shared = reduce(comm, Reduction::exact, M, dealt);
  const Reduced mpi = reduce(comm, Reduction::exact, M, dealt, {}, -1, 0, best_built_level(), {false, -1});
  // Two "nodes" of unequal size when there are 3 ranks.
  const Reduced nodes = reduce(comm, Reduction::exact, M, dealt, {}, -1, 0, best_built_level(), {true, comm.rank() / 2});
  for (const Reduced* r : {&mpi, &nodes}) {
    EXPECT_EQ(shared.mean, r->mean);
    EXPECT_EQ(shared.sums, r->sums);
    EXPECT_EQ(shared.result.loss_sum, r->result.loss_sum);
    EXPECT_EQ(shared.result.rows, r->result.rows);
    EXPECT_EQ(shared.result.sum_squares, r->result.sum_squares);
  }
}

TEST(Reducer, TheNarrowestWireWidthThatKeepsTheBound) {
  // The bound M^2 a 2^(1 - W), W = 8 bytes - 2, must be at most 2^-40 a with the width chosen,
  // and not with one byte less (up to M = 1448, where 8 bytes reach their limit).
  for (Index M = 1; M <= 1448; ++M) {
    const int B = exact_wire_bytes(M);
    const auto bound = [&](int bytes) { return static_cast<double>(M * M) * std::ldexp(1.0, 1 - (8 * bytes - 2)); };
    EXPECT_LE(bound(B), std::ldexp(1.0, -40)) << "M " << M;
    if (B > 6) {
      EXPECT_GT(bound(B - 1), std::ldexp(1.0, -40)) << "M " << M;
    }
  }
  EXPECT_EQ(exact_wire_bytes(2), 6);  // the benchmark's medium model: 2 micro-batches a step
}

class ExactPrecision : public testing::TestWithParam<Index> {};

TEST_P(ExactPrecision, ExactMeetsItsPrecisionBound) {
  MpiComm comm(MPI_COMM_WORLD);
  const Layout layout(spec());
  const Index M = GetParam();
  const int W = 8 * exact_wire_bytes(M) - 2;
  const Reduced r = reduce(comm, Reduction::exact, M, [&](Index g) { return static_cast<int>(g % comm.size()); });
  std::vector<Vec<float>> all(static_cast<std::size_t>(M), Vec<float>(layout.size()));
  for (Index g = 0; g < M; ++g) fill(all[static_cast<std::size_t>(g)].data(), layout, g);
  std::int64_t rows = 0;
  long double loss = 0;
  for (Index g = 0; g < M; ++g) {
    rows += 10 + g % 3;
    loss += 0.25L * g - 3;
  }
  EXPECT_EQ(r.result.rows, rows);
  EXPECT_NEAR(r.result.loss_sum, static_cast<double>(loss), 1e-12);
  // The sum of squares comes from the pass that wrote the mean: per tensor, as l2_norm computes it.
  double sum_squares = 0;
  for (const Slot& s : layout.slots()) {
    const double n = l2_norm(best_built_level(), r.mean.data() + s.offset, s.size());
    sum_squares += n * n;
  }
  EXPECT_NEAR(r.result.sum_squares, sum_squares, 1e-12 * sum_squares);
  EXPECT_NEAR(r.result.sum_squares, r.mean.cast<double>().squaredNorm(), 1e-6 * sum_squares);
  for (const Slot& s : layout.slots()) {
    double a = 0;  // the largest micro-batch element of the slot
    for (const auto& g : all) a = std::max(a, static_cast<double>(g.segment(s.offset, s.size()).cwiseAbs().maxCoeff()));
    for (Index i = s.offset; i < s.offset + s.size(); ++i) {
      long double exact = 0;
      for (const auto& g : all) exact += g(i);
      const double err = std::abs(r.sums[static_cast<std::size_t>(i)] - static_cast<double>(exact));
      ASSERT_LE(err, std::ldexp(a, -40)) << s.name << " element " << i - s.offset;
      ASSERT_LE(err, static_cast<double>(M * M) * a * std::ldexp(1.0, 1 - W));
      // The mean is the sum divided once by the global row count (a multiplication by
      // quantum / rows in double), rounded to float: within one float rounding of sum / rows.
      const double want = r.sums[static_cast<std::size_t>(i)] / static_cast<double>(rows);
      ASSERT_NEAR(r.mean(i), want, std::ldexp(std::abs(want), -23) + 1e-45) << i;
    }
  }
}

// Each width of the integers between nodes: 6 bytes (M <= 5), 7 (M <= 90), 8.
INSTANTIATE_TEST_SUITE_P(Widths, ExactPrecision, testing::Values(5, 6, 13, 90, 91));

TEST(Reducer, FastAgreesWithinFloatRounding) {
  MpiComm comm(MPI_COMM_WORLD);
  SelfComm self;
  const Index M = 9;
  const Reduced fast = reduce(comm, Reduction::fast, M, [&](Index g) { return static_cast<int>(g % comm.size()); });
  const Reduced exact = reduce(self, Reduction::exact, M, [](Index) { return 0; });
  EXPECT_EQ(fast.result.rows, exact.result.rows);
  for (Index i = 0; i < fast.mean.size(); ++i)
    ASSERT_NEAR(fast.mean(i), exact.mean(i), 1e-5 * std::max(std::abs(exact.mean(i)), 1e-3f)) << i;
}

TEST(Reducer, NonFiniteOnOneRankIsSeenByEveryRank) {
  MpiComm comm(MPI_COMM_WORLD);
  const Index M = 7;
  const int P = comm.size();
  for (Reduction mode : {Reduction::exact, Reduction::fast}) {
    for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN()}) {
      // Micro-batch 5 lives on rank 5 % P only.
      const Reduced r = reduce(comm, mode, M, [&](Index g) { return static_cast<int>(g % P); }, {}, 5, bad);
      EXPECT_FALSE(r.result.finite) << "mode " << static_cast<int>(mode) << " value " << bad;
    }
  }
}

TEST(Reducer, FlagsFromOneRankReachEveryRank) {
  MpiComm comm(MPI_COMM_WORLD);
  const int P = comm.size();
  for (Reduction mode : {Reduction::exact, Reduction::fast}) {
    StepFlags mine;
    mine.stop = comm.rank() == P - 1;
    mine.checkpoint = comm.rank() == 0;
    const Reduced r = reduce(comm, mode, 5, [&](Index g) { return static_cast<int>(g % P); }, mine);
    EXPECT_TRUE(r.result.flags.stop);
    EXPECT_TRUE(r.result.flags.checkpoint);
    const Reduced none = reduce(comm, mode, 5, [&](Index g) { return static_cast<int>(g % P); });
    EXPECT_FALSE(none.result.flags.stop);
    EXPECT_FALSE(none.result.flags.checkpoint);
  }
}

TEST(Reducer, FloatTermsReadInPlaceGiveTheSameBits) {
  // Up to two micro-batches a rank: the node's ranks quantise each other's gradients where the
  // backward pass wrote them (a rank's second one right after its first, at any alignment).
  MpiComm comm(MPI_COMM_WORLD);
  SelfComm self;
  const int P = comm.size();
  for (Index M : {Index{1}, Index{P}, Index{2 * P - 1}, Index{2 * P}}) {
    const Reduced one = reduce(self, Reduction::exact, M, [](Index) { return 0; });
    for (CpuLevel level : runnable_levels()) {
      const Reduced r = reduce(comm, Reduction::exact, M, [&](Index g) { return static_cast<int>(g % P); }, {}, -1,
                               0.0f, level);
      if (P > 1) {
        EXPECT_NE(r.route.find("float terms read in place"), std::string::npos) << r.route;
      }
      EXPECT_EQ(r.mean, one.mean) << "M = " << M << ", " << to_string(level);
      EXPECT_EQ(r.sums, one.sums);
      EXPECT_EQ(r.result.sum_squares, one.result.sum_squares);
      EXPECT_EQ(r.result.loss_sum, one.result.loss_sum);
      EXPECT_EQ(r.result.rows, one.result.rows);
    }
  }
  // Three on some rank: the integers, on every rank.
  const Reduced three = reduce(comm, Reduction::exact, 3, [](Index) { return 0; });
  EXPECT_EQ(three.route.find("float terms"), std::string::npos) << three.route;
}

TEST(Reducer, ARankWithoutMicroBatchesTakesPart) {
  MpiComm comm(MPI_COMM_WORLD);
  SelfComm self;
  const Reduced r = reduce(comm, Reduction::exact, 1, [](Index) { return 0; });
  const Reduced one = reduce(self, Reduction::exact, 1, [](Index) { return 0; });
  EXPECT_EQ(r.mean, one.mean);
}

}  // namespace
}  // namespace mdn::test
