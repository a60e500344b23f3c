// Sharded reads, the epoch's batches and their placement, and exact normalisation, under
// mpiexec -n 1, 2 and 3.
#include <mpi.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mdn/data.hpp"
#include "mdn/error.hpp"
#include "mdn/exact.hpp"
#include "mdn/mpi_comm.hpp"
#include "mdn/random.hpp"
#include "mdn/shuffle.hpp"
#include "support/h5_files.hpp"
#include "support/mpi_temp_dir.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

// N not divisible by 2 or 3; B = 100 holds 5 micro-batches of m = 20 (not divisible by 2 or 3);
// the last batch has 37 rows: one full micro-batch and a short one of 17.
constexpr Index kN = 1037;
constexpr Index kB = 100;
constexpr Index kM = 20;

/// x = (id, 2 id), y = -id: every row says which row it is.
void write_id_file(const std::string& path) {
  std::vector<float> x, y;
  for (Index i = 0; i < kN; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(2 * i));
    y.push_back(static_cast<float>(-i));
  }
  write_xy(path, x, 2, y, 1);
}

void check_epochs(Comm& comm, const std::string& path, bool drop_last) {
  const int P = comm.size();
  const DataSet info = inspect_dataset({path}, "x", "y", "data.train");
  const RowRange range = shard_of(kN, P, comm.rank());
  ReadStats st;
  Mat<float> shard = read_shard(info, range, comm, nullptr, nullptr, &st);
  EXPECT_EQ(st.bytes, range.size() * 3 * 4) << "a rank reads its own rows only";
  EXPECT_EQ(shard.cols(), range.size());
  EXPECT_LE(range.size(), (kN + P - 1) / P);
  // The shards tile the file.
  EXPECT_EQ(comm.sum<std::int64_t>(range.size()), kN);
  EXPECT_EQ(shard(0, 0), static_cast<float>(range.begin));

  const BatchSpec spec{kN, kB, kM, drop_last, seed()};
  TrainData data(comm, std::move(shard), range, 2, 1, spec);
  Mat<float> x(2, kM), y(1, kM);
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    data.start_epoch(epoch);
    const IndexShuffle order(kN, seed(), rng::kPermutation + static_cast<std::uint64_t>(epoch));
    std::vector<std::int32_t> seen(static_cast<std::size_t>(kN), 0);
    std::vector<std::int32_t> micro_seen(static_cast<std::size_t>(spec.micro_batches_per_epoch()), 0);
    for (Index b = 0; b < spec.batches_per_epoch(); ++b) {
      for (const auto& mb : data.micro_batches(b)) {
        EXPECT_EQ(mb.global % P, comm.rank()) << "micro-batch " << mb.global << " dealt to the wrong rank";
        EXPECT_EQ(mb.global, b * (kB / kM) + mb.index);
        ++micro_seen[static_cast<std::size_t>(mb.global)];
        data.load(mb, x, y);
        const Index first = b * kB + mb.index * kM;
        EXPECT_EQ(mb.rows, std::min(kM, spec.rows_per_epoch() - first));
        for (Index k = 0; k < mb.rows; ++k) {
          const auto id = static_cast<Index>(x(0, k));
          ASSERT_EQ(id, static_cast<Index>(order(static_cast<std::uint64_t>(first + k))))
              << "epoch " << epoch << " batch " << b << " micro-batch " << mb.index << " row " << k;
          ASSERT_EQ(x(1, k), 2.0f * static_cast<float>(id));
          ASSERT_EQ(y(0, k), -static_cast<float>(id));
          ++seen[static_cast<std::size_t>(id)];
        }
      }
    }
    comm.allreduce(seen.data(), seen.size(), ReduceOp::sum);
    comm.allreduce(micro_seen.data(), micro_seen.size(), ReduceOp::sum);
    // Every row of the epoch exactly once over all ranks; dropped rows never.
    Index used = 0;
    for (Index pos = 0; pos < kN; ++pos) {
      const auto id = static_cast<std::size_t>(order(static_cast<std::uint64_t>(pos)));
      const int expected = pos < spec.rows_per_epoch() ? 1 : 0;
      ASSERT_EQ(seen[id], expected) << "row " << id << " at position " << pos;
      used += seen[id];
    }
    EXPECT_EQ(used, drop_last ? 1000 : kN);
    for (auto c : micro_seen) ASSERT_EQ(c, 1);
  }
  // Rows held: shard plus the epoch's rows, within 2 ceil(N/P) + 2m.
  EXPECT_LE(data.max_rows_held(), 2 * ((kN + P - 1) / P) + 2 * kM);
  EXPECT_EQ(data.rows_read(), range.size());
}

TEST(TrainData, EveryMicroBatchHoldsItsRowsOnItsRank) {
  MpiComm comm(MPI_COMM_WORLD);
  SharedTempDir dir(comm);
  if (comm.is_root()) write_id_file(dir / "ids.h5");
  comm.barrier();
  check_epochs(comm, dir / "ids.h5", false);
}

TEST(TrainData, DropLastDropsTheShortBatch) {
  MpiComm comm(MPI_COMM_WORLD);
  SharedTempDir dir(comm);
  if (comm.is_root()) write_id_file(dir / "ids.h5");
  comm.barrier();
  check_epochs(comm, dir / "ids.h5", true);
}

TEST(TrainData, SmallExchangeRoundsDealTheSameRows) {
  // Rounds of 7 slots: many rounds, in which ranks fill different numbers of slots.
  MpiComm comm(MPI_COMM_WORLD);
  SharedTempDir dir(comm);
  if (comm.is_root()) write_id_file(dir / "ids.h5");
  comm.barrier();
  const DataSet info = inspect_dataset({dir / "ids.h5"}, "x", "y", "data.train");
  const RowRange range = shard_of(kN, comm.size(), comm.rank());
  const BatchSpec spec{kN, kB, kM, false, seed()};
  TrainData a(comm, read_shard(info, range, comm, nullptr, nullptr), range, 2, 1, spec);
  TrainData b(comm, read_shard(info, range, comm, nullptr, nullptr), range, 2, 1, spec);
  b.set_round_slots(7);
  a.start_epoch(4);
  b.start_epoch(4);
  if (comm.size() > 1) {
    EXPECT_GT(b.exchange_rounds(), 10);
  }
  Mat<float> xa(2, kM), ya(1, kM), xb(2, kM), yb(1, kM);
  for (Index batch = 0; batch < spec.batches_per_epoch(); ++batch) {
    ASSERT_EQ(a.micro_batches(batch).size(), b.micro_batches(batch).size());
    for (std::size_t i = 0; i < a.micro_batches(batch).size(); ++i) {
      a.load(a.micro_batches(batch)[i], xa, ya);
      b.load(b.micro_batches(batch)[i], xb, yb);
      const Index rows = a.micro_batches(batch)[i].rows;
      ASSERT_EQ(xa.leftCols(rows), xb.leftCols(rows));
      ASSERT_EQ(ya.leftCols(rows), yb.leftCols(rows));
    }
  }
}

/// Column 0: offset 1e6 plus structure; column 1 constant (zero variance); y spans magnitudes.
void write_stats_file(const std::string& path, Index N) {
  std::vector<float> x, y;
  for (Index i = 0; i < N; ++i) {
    x.push_back(static_cast<float>(1e6 + std::sin(0.37 * static_cast<double>(i)) * 1000));
    x.push_back(3.25f);
    y.push_back(static_cast<float>(std::pow(-1.0, static_cast<double>(i)) * std::exp(0.01 * static_cast<double>(i % 700))));
    y.push_back(static_cast<float>(i % 13) * 0.5f);
  }
  write_xy(path, x, 2, y, 2);
}

TEST(Normalization, BitIdenticalForEveryRankCountAndZeroVarianceGetsStdOne) {
  MpiComm comm(MPI_COMM_WORLD);
  SharedTempDir dir(comm);
  const Index N = 2003;
  if (comm.is_root()) write_stats_file(dir / "stats.h5", N);
  comm.barrier();
  const DataSet info = inspect_dataset({dir / "stats.h5"}, "x", "y", "data.train");

  Normalization dist;
  read_shard(info, shard_of(N, comm.size(), comm.rank()), comm, nullptr, &dist);

  // The same statistics from all rows on one process: must be bit-identical.
  SelfComm self;
  Normalization one;
  read_shard(info, {0, N}, self, nullptr, &one);
  const Mat<float> all = read_shard(info, {0, N}, self, nullptr, nullptr);  // raw values
  for (Index f = 0; f < 2; ++f) {
    EXPECT_EQ(dist.x_mean(f), one.x_mean(f)) << f;
    EXPECT_EQ(dist.x_std(f), one.x_std(f)) << f;
    EXPECT_EQ(dist.y_mean(f), one.y_mean(f)) << f;
    EXPECT_EQ(dist.y_std(f), one.y_std(f)) << f;
  }
  EXPECT_EQ(dist.x_std(1), 1.0) << "zero-variance column";
  EXPECT_EQ(dist.x_mean(1), 3.25);

  // And correct: against a long-double two-pass computation.
  for (int which = 0; which < 2; ++which) {
    const Normalization& n = dist;
    for (Index f = 0; f < 2; ++f) {
      const Index row = which * 2 + f;
      long double s = 0;
      for (Index j = 0; j < N; ++j) s += all(row, j);
      const long double mean = s / N;
      long double q = 0;
      for (Index j = 0; j < N; ++j) q += (all(row, j) - mean) * (all(row, j) - mean);
      const double sd = q > 0 ? static_cast<double>(std::sqrt(q / N)) : 1.0;
      const double m = which == 0 ? n.x_mean(f) : n.y_mean(f);
      const double s2 = which == 0 ? n.x_std(f) : n.y_std(f);
      EXPECT_NEAR(m, static_cast<double>(mean), 1e-14 * std::max(1.0, std::abs(static_cast<double>(mean))));
      EXPECT_NEAR(s2, sd, 1e-12 * sd);
    }
  }
}

TEST(ExactSums, PartitionIndependentAndAccurate) {
  MpiComm comm(MPI_COMM_WORLD);
  // Values whose float sum depends on the order: large and small magnitudes, cancellation.
  const Index n = 3001;
  Eigen::MatrixXd all(2, n);
  for (Index j = 0; j < n; ++j) {
    all(0, j) = (j % 3 == 0 ? 1e15 : j % 3 == 1 ? -1e15 : 1.0) + 0.125 * static_cast<double>(j);
    all(1, j) = std::ldexp(1.0, static_cast<int>(j % 40) - 20) * (j % 2 ? 1 : -1);
  }
  const RowRange r = shard_of(n, comm.size(), comm.rank());
  const auto dist = exact_sums(all.middleCols(r.begin, r.size()), comm);
  SelfComm self;
  Eigen::MatrixXd reversed = all.rowwise().reverse();
  const auto one = exact_sums(reversed, self);
  EXPECT_EQ(dist[0], one[0]);
  EXPECT_EQ(dist[1], one[1]);
  long double s0 = 0, s1 = 0;
  for (Index j = 0; j < n; ++j) {
    s0 += all(0, j);
    s1 += all(1, j);
  }
  // Error bound: n values, each within a * 2^-53 (a = max |v|).
  EXPECT_NEAR(dist[0], static_cast<double>(s0), n * 1.1e15 * std::ldexp(1.0, -53) + 1e-3);
  EXPECT_NEAR(dist[1], static_cast<double>(s1), n * std::ldexp(1.0, 20) * std::ldexp(1.0, -53));
}

TEST(ReadShard, FirstNonFiniteRowIsReportedOnEveryRank) {
  MpiComm comm(MPI_COMM_WORLD);
  SharedTempDir dir(comm);
  const Index N = 900;
  if (comm.is_root()) {
    std::vector<float> x(N, 1.0f), y(N, 2.0f);
    x[733] = std::numeric_limits<float>::quiet_NaN();
    y[517] = std::numeric_limits<float>::infinity();
    write_xy(dir / "bad.h5", x, 1, y, 1);
  }
  comm.barrier();
  const DataSet info = inspect_dataset({dir / "bad.h5"}, "x", "y", "data.train");
  try {
    read_shard(info, shard_of(N, comm.size(), comm.rank()), comm, nullptr, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    EXPECT_TRUE(e.collective());
    EXPECT_EQ(std::string(e.what()),
              "'" + (dir / "bad.h5") + "': dataset 'y' has a NaN or Inf in row 517 (the first such row)");
  }
}

}  // namespace
}  // namespace mdn::test
