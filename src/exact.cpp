#include "mdn/exact.hpp"

#include <cmath>

#include "mdn/error.hpp"

namespace mdn {

namespace detail {

constexpr int kLimbs = 4;

void exact_scales(std::vector<double>& amax, std::vector<int>& exponent, std::vector<double>& scale, Comm& comm) {
  comm.allreduce(amax.data(), amax.size(), ReduceOp::max);
  exponent.assign(amax.size(), 0);
  scale.assign(amax.size(), 0.0);
  for (std::size_t f = 0; f < amax.size(); ++f) {
    if (!std::isfinite(amax[f])) throw run_error("exact sum of non-finite values (feature {})", f);
    if (amax[f] > 0) std::frexp(amax[f], &exponent[f]);  // a < 2^e
    scale[f] = std::ldexp(1.0, kExactBits - exponent[f]);   // a power of two: scaling is exact
  }
}

std::vector<double> exact_finish(const std::vector<ExactInt>& sum, const std::vector<double>& amax,
                                 const std::vector<int>& exponent, Comm& comm) {
  const std::size_t F = sum.size();
  std::vector<std::int64_t> limbs(F * kLimbs, 0);
  for (std::size_t f = 0; f < F; ++f) {
    for (int l = 0; l < kLimbs - 1; ++l)
      limbs[f * kLimbs + static_cast<std::size_t>(l)] = static_cast<std::int64_t>((sum[f] >> (32 * l)) & 0xffffffff);
    limbs[f * kLimbs + kLimbs - 1] = static_cast<std::int64_t>(sum[f] >> (32 * (kLimbs - 1)));
  }
  comm.allreduce(limbs.data(), limbs.size(), ReduceOp::sum);
  std::vector<double> sums(F, 0.0);
  for (std::size_t f = 0; f < F; ++f) {
    if (amax[f] == 0.0) continue;
    ExactInt total = 0;
    for (int l = 0; l < kLimbs; ++l)
      total += static_cast<ExactInt>(limbs[f * kLimbs + static_cast<std::size_t>(l)]) * (static_cast<ExactInt>(1) << (32 * l));
    sums[f] = std::ldexp(static_cast<double>(total), exponent[f] - kExactBits);
  }
  return sums;
}

}  // namespace detail

std::vector<double> exact_sums(const Eigen::Ref<const Eigen::MatrixXd>& values, Comm& comm) {
  return exact_sums_of(values.rows(), values.cols(), [&](Index f, Index j) { return values(f, j); }, comm);
}

}  // namespace mdn
