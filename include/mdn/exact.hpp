// Exact, order-independent sums across ranks.
//
// Floating-point addition is not associative: a sum over rows depends on how the rows are spread
// over ranks and in which order they are added. mdn's reported numbers (normalisation
// statistics, validation and eval NLLs) and its training steps instead sum fixed-point integers,
// which are associative, so the result is the same for any number of ranks.
//
// exact_sums (long sums, e.g. over the rows of a dataset): for feature f, with a = max |v| over
// every value of every rank (one small MPI_MAX), the quantum is q = 2^(e-62) where a < 2^e; each
// value is rounded to a multiple of q (error <= q/2 < a * 2^-63), summed as a 128-bit integer on
// each rank, and the ranks' sums are added as four 32-bit limbs held in int64 (one MPI_SUM);
// carries are resolved afterwards. No overflow is possible below 2^64 values.
#pragma once

#include <Eigen/Core>

#include <vector>

#include "mdn/comm.hpp"
#include "mdn/model.hpp"

namespace mdn {

/// Sums of each row of `values` (F features x n samples, column-major) over the samples of every
/// rank; collective; the result is identical on every rank and for any distribution of the
/// samples over ranks. Values must be finite (throws mdn::Error otherwise).
std::vector<double> exact_sums(const Eigen::Ref<const Eigen::MatrixXd>& values, Comm& comm);

}  // namespace mdn
