// Bishop's inverse problem (Pattern Recognition and Machine Learning, 5.6):
// t ~ U(0, 1), x = t + 0.3 sin(2 pi t) + U(-0.1, 0.1); learn p(t | x), which has up to three
// branches. Rows are generated from (seed, row), so any subset can be regenerated.
#pragma once

#include <cmath>
#include <cstdint>

#include "mdn/model.hpp"
#include "mdn/random.hpp"

namespace mdn::test {

struct BishopData {
  Mat<float> x;  // (1, N)
  Mat<float> y;  // (1, N)
};

inline BishopData bishop(Index n, std::uint64_t seed) {
  BishopData d{Mat<float>(1, n), Mat<float>(1, n)};
  for (Index i = 0; i < n; ++i) {
    rng::Sequence r(seed, rng::kTestData + 7, 2 * static_cast<std::uint64_t>(i));
    const double t = r.uniform();
    const double noise = -0.1 + 0.2 * r.uniform();
    d.y(0, i) = static_cast<float>(t);
    d.x(0, i) = static_cast<float>(t + 0.3 * std::sin(2 * M_PI * t) + noise);
  }
  return d;
}

}  // namespace mdn::test
