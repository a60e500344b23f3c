// Comm over real MPI processes (ctest runs this under mpiexec -n 1, 2, 3 and 4).
#include <mpi.h>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <limits>

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

/// Rank r's value i in round `round`: large, of both signs, different for every rank, element and
/// round, and such that the sum over up to 4 ranks fits in `wire` bytes (|value| < 2^(8 wire - 5)).
std::int64_t term(int rank, std::size_t i, int round, int wire = 8) {
  const auto h = (static_cast<std::uint64_t>(rank) + 1) * 0x9E3779B97F4A7C15ull ^
                 (static_cast<std::uint64_t>(i) + 7) * 0xC2B2AE3D27D4EB4Full ^ static_cast<std::uint64_t>(round) << 40;
  return static_cast<std::int64_t>(h >> (68 - 8 * wire)) - (std::int64_t{1} << (8 * wire - 5));
}

/// Copies each finished unit's sums into the results, and counts the units it finished.
struct CopyUnits final : SumFinisher {
  explicit CopyUnits(IntegerSum& s, const std::vector<std::size_t>& u) : sum(s), units(u) {}
  void finish(const std::int64_t* sums, std::size_t first, std::size_t last) override {
    auto* out = static_cast<std::int64_t*>(sum.results());
    for (std::size_t i = units[first]; i < units[last]; ++i) out[i] = sums[i];
    finished += last - first;
  }
  /// The test's quantisation: round(4 x), summed over the terms.
  void quantize(const float* const* terms, int count, std::size_t first, std::size_t last, std::int64_t* sums) override {
    for (std::size_t i = units[first]; i < units[last]; ++i) {
      sums[i] = 0;
      for (int c = 0; c < count; ++c) sums[i] += std::llrint(4.0 * static_cast<double>(terms[c][i]));
    }
    quantized += last - first;
  }
  IntegerSum& sum;
  const std::vector<std::size_t>& units;
  std::int64_t finished = 0;
  std::int64_t quantized = 0;
};

/// Rank r's float term k of element i in `round` (eighths of both signs, up to 2^24).
float float_term(int rank, int k, std::size_t i, int round) {
  return static_cast<float>(std::ldexp(static_cast<double>(term(2 * rank + k, i, round, 4)), -3));
}

/// Sums several rounds through one IntegerSum (values rewritten right after each sum, as the
/// reducer does) and checks every element against the sum computed here from the terms; a
/// finisher copies the sums into the results.
/// `copies`: how many copies of the results there are — one per node through shared memory, one
/// per rank through MPI — each unit being finished once per copy.
/// `wire` > 0: the results' regions are given and the values fit in `wire` bytes, so that ranks
/// apart pass on results (each unit finished once in all) and the sums are complete only where
/// this rank finished; 0: the integers are allreduced.
/// `terms` > 0: elements below 100000 may come as that many float terms; where the route takes
/// them, rank r gives (r + round) mod (terms + 1) of them, and the finisher quantises them.
void check_integer_sum(MpiComm& c, const IntegerSumOptions& options, const char* route_has, int copies, int wire = 0,
                       int terms = 0) {
  const std::size_t n = 150007;  // odd: chunks of unequal length; the ring sends several a step
  std::vector<std::size_t> units;  // of 1000 elements, then a ragged one
  for (std::size_t i = 0; i < n; i += 1000) units.push_back(i);
  units.push_back(n);
  IntegerSumSpec spec{n, units, n * sizeof(std::int64_t), {}};
  if (wire > 0) {
    spec.result_regions.emplace_back();
    for (std::size_t u : units) spec.result_regions[0].push_back(u * sizeof(std::int64_t));
  }
  spec.terms = terms;
  spec.term_elements = terms > 0 ? 100000 : 0;
  auto sum = c.integer_sum(spec, options);
  ASSERT_EQ(sum->size(), n);
  EXPECT_NE(sum->route().find(route_has), std::string::npos) << sum->route();
  const bool taken = sum->term(0) != nullptr;
  EXPECT_EQ(sum->route().find("float terms") != std::string::npos, taken) << sum->route();
  if (!taken) {
    EXPECT_EQ(sum->term(1), nullptr);
  }
  // Each unit of terms is quantised once per node.
  std::vector<std::int64_t> node_of(static_cast<std::size_t>(c.size()), 0);
  node_of[static_cast<std::size_t>(c.rank())] = options.node < 0 ? 0 : options.node;
  c.allreduce(node_of.data(), node_of.size(), ReduceOp::sum);
  std::sort(node_of.begin(), node_of.end());
  const auto nodes = std::unique(node_of.begin(), node_of.end()) - node_of.begin();
  const std::size_t te = taken ? spec.term_elements : 0;
  const auto count = [&](int r, int round) { return taken ? (r + round) % (terms + 1) : 0; };
  const int w = wire > 0 ? wire : 8;
  for (int round = 0; round < 3; ++round) {
    std::int64_t* v = sum->values();
    for (int k = 0; k < count(c.rank(), round); ++k)
      for (std::size_t i = 0; i < te; ++i) sum->term(k)[i] = float_term(c.rank(), k, i, round);
    for (std::size_t i = te; i < n; ++i) v[i] = term(c.rank(), i, round, w);
    CopyUnits copy(*sum, units);
    // Round 1 without a finisher (the sums complete everywhere), where no terms need one.
    const bool bare = round == 1 && !taken;
    const std::int64_t* s = bare ? sum->sum(nullptr, w) : sum->sum(&copy, w, count(c.rank(), round));
    const auto* results = static_cast<const std::int64_t*>(sum->results());
    std::size_t wrong = 0, wrong_results = 0;
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t expected = 0;
      for (int r = 0; r < c.size(); ++r) {
        if (i >= te) expected += term(r, i, round, w);
        for (int k = 0; i < te && k < count(r, round); ++k)
          expected += std::llrint(4.0 * static_cast<double>(float_term(r, k, i, round)));
      }
      wrong += (bare || wire == 0) && s[i] != expected;
      wrong_results += !bare && results[i] != expected;
    }
    EXPECT_EQ(wrong, 0u) << "round " << round << ", route " << sum->route();
    EXPECT_EQ(wrong_results, 0u) << "round " << round << ", route " << sum->route();
    if (!bare) {
      EXPECT_EQ(c.sum(copy.finished), static_cast<std::int64_t>(units.size() - 1) * copies);
      EXPECT_EQ(c.sum(copy.quantized), taken ? static_cast<std::int64_t>(te / 1000) * nodes : 0);
    }
  }
}

TEST(MpiComm, IntegerSumThroughSharedMemory) {
  MpiComm c(MPI_COMM_WORLD);
  check_integer_sum(c, {}, c.size() == 1 ? "one rank" : "shared memory", 1);
}

TEST(MpiComm, IntegerSumOfFloatTerms) {
  // One and two terms per rank, some ranks giving none: on one node, over nodes of two ranks
  // (between them the allreduce and the ring) and of unequal size. Routes without shared memory
  // take the integers only.
  MpiComm c(MPI_COMM_WORLD);
  for (int terms : {1, 2}) {
    check_integer_sum(c, {}, c.size() == 1 ? "one rank" : "shared memory", 1, 0, terms);
    if (c.size() % 2 == 0) {
      check_integer_sum(c, {true, c.rank() % 2}, c.size() == 2 ? "per-rank chunks" : "2 nodes", 2, 0, terms);
      check_integer_sum(c, {true, c.rank() % 2}, c.size() == 2 ? "per-rank chunks" : "2 nodes", 1, 6, terms);
    }
    if (c.size() >= 3) check_integer_sum(c, {true, c.rank() == 0 ? 0 : 1}, "unequal size", 1, 6, terms);
    check_integer_sum(c, {false, -1}, c.size() == 1 ? "one rank" : "MPI ring", 1, 6, terms);
  }
  // Terms only where every rank gives them: rank 0 asks for none.
  if (c.size() > 1) {
    const std::size_t n = 4096;
    IntegerSumSpec spec{n, {}, 0, {}};
    spec.terms = c.rank() == 0 ? 0 : 1;
    spec.term_elements = 2048;
    EXPECT_EQ(c.integer_sum(spec)->term(0), nullptr);
  }
}

TEST(MpiComm, IntegerSumThroughMpiAlone) {
  MpiComm c(MPI_COMM_WORLD);
  check_integer_sum(c, {false, -1}, c.size() == 1 ? "one rank" : "MPI allreduce", c.size());
  // With the results' regions: a ring of narrowed integers (6, 7 and 8 bytes), then of results.
  for (int wire : {6, 7, 8}) check_integer_sum(c, {false, -1}, c.size() == 1 ? "one rank" : "MPI ring", 1, wire);
}

TEST(MpiComm, IntegerSumOverNodesOfEqualSize) {
  // Ranks grouped into "nodes" of two (and of one): every node rank allreduces its chunk with
  // its peers on the other nodes.
  MpiComm c(MPI_COMM_WORLD);
  if (c.size() % 2 == 0)
    check_integer_sum(c, {true, c.rank() / 2}, c.size() == 2 ? "1 node" : "per-rank chunks", c.size() / 2);
  if (c.size() > 1) check_integer_sum(c, {true, c.rank()}, "per-rank chunks", c.size());
  if (c.size() % 2 == 0)
    check_integer_sum(c, {true, c.rank() % 2}, c.size() == 2 ? "per-rank chunks" : "2 nodes", 2);
  // Between nodes a ring of narrowed integers and results: each unit finished once.
  for (int wire : {6, 8}) {
    if (c.size() % 2 == 0) check_integer_sum(c, {true, c.rank() / 2}, c.size() == 2 ? "1 node" : "ring", 1, wire);
    if (c.size() > 1) check_integer_sum(c, {true, c.rank()}, "a ring of narrowed integers", 1, wire);
    if (c.size() % 2 == 0) check_integer_sum(c, {true, c.rank() % 2}, "a ring of narrowed integers", 1, wire);
  }
}

TEST(MpiComm, IntegerSumOverNodesOfUnequalSize) {
  // Rank 0 alone, the others together: the nodes' first ranks allreduce the whole vector.
  MpiComm c(MPI_COMM_WORLD);
  if (c.size() < 3) GTEST_SKIP() << "needs 3 ranks";
  check_integer_sum(c, {true, c.rank() == 0 ? 0 : 1}, "unequal size", 2);
  check_integer_sum(c, {true, c.rank() == 0 ? 0 : 1}, "unequal size", 1, 6);
}

TEST(MpiComm, IntegerSumFallsBackToMpiWhereNoSegmentCanBeMade) {
  // A file size limit below the segment's size (as under `ulimit -f`): creating the segment
  // fails, and every rank sums through MPI instead.
  MpiComm c(MPI_COMM_WORLD);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit tight = old;
  tight.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
  check_integer_sum(c, {}, c.size() == 1 ? "one rank" : "MPI allreduce", c.size());
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
}

TEST(MpiComm, FailedCallBecomesErrorWithMpiMessage) {
  MpiComm c(MPI_COMM_WORLD);
  int x = 0;
  try {
    c.broadcast(&x, 1, c.size());  // no such root: MPI reports MPI_ERR_ROOT on every rank
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    // The MPI's own text for the error: OpenMPI says MPI_ERR_ROOT, MPICH "Invalid root".
    const std::string m = e.what();
    EXPECT_TRUE(m.rfind("MPI_Ibcast failed: MPI_ERR_ROOT", 0) == 0 || m.rfind("MPI_Ibcast failed: Invalid root", 0) == 0)
        << m;
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
