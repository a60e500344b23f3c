// Distributed, exact evaluation of the mean NLL of a dataset (validation, `mdn eval`).
#pragma once

#include <cstdint>

#include "mdn/comm.hpp"
#include "mdn/network.hpp"

namespace mdn {

struct EvalResult {
  double nll_sum = 0;      ///< summed per-sample NLL over all ranks, normalised units
  std::int64_t rows = 0;   ///< rows over all ranks
};

/// Evaluates the rows of `shard` ((D + L, n) float, x rows first) in consecutive blocks of
/// net.max_n() rows from the shard's start, each copied into an aligned buffer first. The
/// per-sample NLLs are summed exactly over every rank: with block-aligned shards
/// (block_shard_of) the result is identical for any number of ranks. Collective.
EvalResult evaluate(Network<float>& net, const float* params, const Mat<float>& shard, Comm& comm);

}  // namespace mdn
