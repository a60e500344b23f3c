// Exact, order-independent sums across ranks.
//
// Floating-point addition is not associative: a sum over rows depends on how the rows are spread
// over ranks and in which order they are added. mdn's reported numbers (normalisation
// statistics, validation and eval NLLs) and its training steps instead sum fixed-point integers,
// which are associative, so the result is the same for any number of ranks.
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
