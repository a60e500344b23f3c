// Exact, order-independent sums across ranks.
//
// Floating-point addition is not associative: a sum over rows depends on how the rows are spread
// over ranks and in which order they are added. mdn's reported numbers (validation and eval NLLs
// by exact_sums, normalisation statistics by ExactMoments below) and its training steps instead
// sum fixed-point integers, which are associative, so the result is the same for any number of
// ranks.
//
// exact_sums (long sums, e.g. over the rows of a dataset): for feature f, with a = max |v| over
// every value of every rank (one small MPI_MAX), the quantum is q = 2^(e-52) where a < 2^e; each
// value is rounded to a multiple of q (error <= q/2 < a * 2^-53, a double's own precision),
// summed in blocks of 1024 in int64 and the blocks in 128 bits on each rank, and the ranks' sums
// are added as four 32-bit limbs held in int64 (one MPI_SUM); carries are resolved afterwards. No
// overflow is possible below 2^74 values.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/model.hpp"

namespace mdn {

/// Sums over j of value(f, j), for f < F and j < n, over the samples of every rank; collective;
/// identical on every rank and for any distribution of the samples over ranks. value() must be
/// finite (throws mdn::Error otherwise).
template <class Value>
std::vector<double> exact_sums_of(Index F, Index n, const Value& value, Comm& comm);

/// Sums of each row of `values` (F features x n samples, column-major) over the samples of every
/// rank (exact_sums_of for values(f, j)).
std::vector<double> exact_sums(const Eigen::Ref<const Eigen::MatrixXd>& values, Comm& comm);

namespace detail {

__extension__ typedef __int128 ExactInt;
constexpr int kExactBits = 52;      // quantised magnitudes stay below 2^52 ...
constexpr Index kExactBlock = 1024; // ... so that 1024 of them add up in int64 before int128

/// Global maxima -> exponents and scales; throws on non-finite maxima.
void exact_scales(std::vector<double>& amax, std::vector<int>& exponent, std::vector<double>& scale, Comm& comm);
/// The ranks' 128-bit sums added across ranks and converted back to doubles.
std::vector<double> exact_finish(const std::vector<ExactInt>& sum, const std::vector<double>& amax,
                                 const std::vector<int>& exponent, Comm& comm);

}  // namespace detail

template <class Value>
std::vector<double> exact_sums_of(Index F, Index n, const Value& value, Comm& comm) {
  std::vector<double> amax(static_cast<std::size_t>(F), 0.0);
  for (Index j = 0; j < n; ++j)
    for (Index f = 0; f < F; ++f) {
      const double v = std::abs(static_cast<double>(value(f, j)));
      auto& a = amax[static_cast<std::size_t>(f)];
      a = v > a || v != v ? v : a;  // NaN propagates (and is refused)
    }
  std::vector<int> exponent;
  std::vector<double> scale;
  detail::exact_scales(amax, exponent, scale, comm);
  std::vector<detail::ExactInt> sum(static_cast<std::size_t>(F), 0);
  std::vector<std::int64_t> block(static_cast<std::size_t>(F), 0);
  for (Index j0 = 0; j0 < n; j0 += detail::kExactBlock) {
    std::fill(block.begin(), block.end(), 0);
    const Index j1 = std::min(n, j0 + detail::kExactBlock);
    for (Index j = j0; j < j1; ++j)
      for (Index f = 0; f < F; ++f)
        block[static_cast<std::size_t>(f)] += static_cast<std::int64_t>(
            std::nearbyint(static_cast<double>(value(f, j)) * scale[static_cast<std::size_t>(f)]));
    for (Index f = 0; f < F; ++f) sum[static_cast<std::size_t>(f)] += block[static_cast<std::size_t>(f)];
  }
  return detail::exact_finish(sum, amax, exponent, comm);
}

}  // namespace mdn

namespace mdn {

/// Exact mean and variance of F columns in one pass over the values (a stream of slabs read from
/// a file need not be read twice), for normalisation statistics.
///
/// Every finite double is an integer times a power of two, x = M 2^E, and so is its square,
/// M^2 2^(2E) (M^2 split in three parts of at most 54 bits). Each part is added, shifted, into a
/// 128-bit bucket for its 32-bit slice of exponents: no rounding at all, in any order, on any rank.
/// finish() adds the ranks' buckets (32-bit limbs, one MPI_SUM), and then, in a fixed-point integer
/// of some 4300 bits:
///   mean = round(round(sum x) / N)
///   var  = round(round(sum x^2 - 2 mean sum x + N mean^2) / N)  (= sum (x - mean)^2 exactly)
/// where round() is to the nearest double. std = sqrt(var), or 1 for a constant column. The
/// result is therefore the same for any P and any order of the rows. Up to 2^42 values per column.
class ExactMoments {
 public:
  explicit ExactMoments(Index columns);

  /// Adds value v of column f (finite: the caller checks).
  void add(Index f, double v);
  /// Adds the (columns x n) values of a column-major array whose column j is a row of the data.
  template <class S>
  void add_rows(const S* values, Index stride, Index n, Index first_column = 0, Index columns = -1) {
    const Index F = columns < 0 ? columns_ : columns;
    for (Index j = 0; j < n; ++j)
      for (Index f = 0; f < F; ++f) add(first_column + f, static_cast<double>(values[j * stride + f]));
  }
  Index columns() const { return columns_; }

  /// Over every rank's values (collective): the mean and population std of each column, and the
  /// number of values N (every column has the same).
  void finish(std::int64_t N, Comm& comm, Eigen::VectorXd& mean, Eigen::VectorXd& stddev);

  static constexpr int kBuckets = 136;  ///< 32-bit slices from 2^kLowest up to beyond 2^2100
  static constexpr int kLowest = -2176; ///< below the smallest square of a double, 2^-2148

 private:
  __extension__ typedef __int128 Int;
  void put(Int* buckets, std::int64_t value, int exponent) {
    const int at = exponent - kLowest;
    buckets[at >> 5] += static_cast<Int>(value) << (at & 31);
  }
  Index columns_;
  std::vector<Int> sum_, square_;  // (columns x kBuckets) each
};

}  // namespace mdn
