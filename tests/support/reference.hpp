// Independent references for the core's tests: random inputs and a direct long-double
// evaluation of the mixture density from its definition (no log-space tricks).
#pragma once

#include <cmath>
#include <cstdint>

#include "mdn/model.hpp"
#include "mdn/random.hpp"

namespace mdn::test {

/// (rows, cols) matrix of uniform values in [lo, hi) from (seed, stream).
template <class S>
Mat<S> uniform_matrix(Index rows, Index cols, double lo, double hi, std::uint64_t seed,
                      std::uint64_t stream) {
  Mat<S> m(rows, cols);
  rng::Sequence r(seed, rng::kTestData + stream);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) m(i, j) = static_cast<S>(lo + (hi - lo) * r.uniform());
  return m;
}

/// -log p(y | head) for one sample, by direct evaluation in long double:
/// p = sum_k softmax(a)_k prod_l exp(-(y_l - mu)^2 / (2 sigma^2)) / (sqrt(2 pi) sigma).
/// head: one row of O head outputs; y: L values. Only for moderate values (no underflow).
template <class RowT, class ColT>
long double direct_nll(const RowT& head, const ColT& y, int K, int L, SigmaMode mode,
                       double sigma_min) {
  long double amax = head(0);
  for (int k = 1; k < K; ++k) amax = std::max<long double>(amax, head(k));
  long double z = 0;
  for (int k = 0; k < K; ++k) z += std::exp(static_cast<long double>(head(k)) - amax);
  long double p = 0;
  for (int k = 0; k < K; ++k) {
    long double term = std::exp(static_cast<long double>(head(k)) - amax) / z;
    for (int l = 0; l < L; ++l) {
      const long double mu = head(K + k * L + l);
      const long double raw = head(K + K * L + k * L + l);
      const long double f = mode == SigmaMode::softplus ? std::log1p(std::exp(raw)) : std::exp(raw);
      const long double sigma = f + sigma_min;
      const long double d = static_cast<long double>(y(l)) - mu;
      term *= std::exp(-d * d / (2 * sigma * sigma)) /
              (std::sqrt(2 * static_cast<long double>(M_PI)) * sigma);
    }
    p += term;
  }
  return -std::log(p);
}

}  // namespace mdn::test
