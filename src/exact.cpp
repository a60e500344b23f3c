#include "mdn/exact.hpp"

#include <cmath>

#include "mdn/error.hpp"

namespace mdn {

namespace {
__extension__ typedef __int128 i128;
constexpr int kLimbs = 4;
constexpr int kBits = 62;  // quantised magnitudes stay below 2^62
}  // namespace

std::vector<double> exact_sums(const Eigen::Ref<const Eigen::MatrixXd>& values, Comm& comm) {
  const Index F = values.rows();
  const Index n = values.cols();
  std::vector<double> amax(static_cast<std::size_t>(F), 0.0);
  for (Index f = 0; f < F; ++f) {
    if (n > 0) amax[static_cast<std::size_t>(f)] = values.row(f).cwiseAbs().maxCoeff();
  }
  comm.allreduce(amax.data(), amax.size(), ReduceOp::max);

  std::vector<int> exponent(static_cast<std::size_t>(F), 0);
  std::vector<std::int64_t> limbs(static_cast<std::size_t>(F * kLimbs), 0);
  for (Index f = 0; f < F; ++f) {
    const auto fi = static_cast<std::size_t>(f);
    const double a = amax[fi];
    if (!std::isfinite(a)) throw run_error("exact sum of non-finite values (feature {})", f);
    if (a == 0.0) continue;
    std::frexp(a, &exponent[fi]);  // a < 2^e
    const int shift = kBits - exponent[fi];
    i128 sum = 0;
    for (Index j = 0; j < n; ++j) sum += std::llrint(std::ldexp(values(f, j), shift));
    for (int l = 0; l < kLimbs - 1; ++l)
      limbs[fi * kLimbs + static_cast<std::size_t>(l)] = static_cast<std::int64_t>((sum >> (32 * l)) & 0xffffffff);
    limbs[fi * kLimbs + kLimbs - 1] = static_cast<std::int64_t>(sum >> (32 * (kLimbs - 1)));
  }
  comm.allreduce(limbs.data(), limbs.size(), ReduceOp::sum);

  std::vector<double> sums(static_cast<std::size_t>(F), 0.0);
  for (Index f = 0; f < F; ++f) {
    const auto fi = static_cast<std::size_t>(f);
    if (amax[fi] == 0.0) continue;
    i128 total = 0;
    for (int l = 0; l < kLimbs; ++l)
      total += static_cast<i128>(limbs[fi * kLimbs + static_cast<std::size_t>(l)]) * (static_cast<i128>(1) << (32 * l));
    sums[fi] = std::ldexp(static_cast<double>(total), exponent[fi] - kBits);
  }
  return sums;
}

}  // namespace mdn
