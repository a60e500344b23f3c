#include "mdn/random.hpp"

#include <Random123/philox.h>

#include <cmath>

#include "mdn/detmath.hpp"

namespace mdn::rng {

std::uint64_t bits(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter) {
  using G = r123::Philox4x32;
  const G::ctr_type ctr = {{static_cast<std::uint32_t>(counter),
                            static_cast<std::uint32_t>(counter >> 32),
                            static_cast<std::uint32_t>(stream),
                            static_cast<std::uint32_t>(stream >> 32)}};
  const G::key_type key = {{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}};
  const G::ctr_type out = G()(ctr, key);
  return static_cast<std::uint64_t>(out[0]) | (static_cast<std::uint64_t>(out[1]) << 32);
}

__extension__ typedef unsigned __int128 u128;

std::uint64_t Sequence::below(std::uint64_t n) {
  // Lemire, "Fast random integer generation in an interval" (2019).
  const std::uint64_t threshold = (0 - n) % n;
  for (;;) {
    const u128 m = static_cast<u128>(next_bits()) * n;
    if (static_cast<std::uint64_t>(m) >= threshold) return static_cast<std::uint64_t>(m >> 64);
  }
}

double Sequence::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
  const double u2 = uniform();
  return std::sqrt(-2.0 * det::log(u1)) * det::cos(2.0 * M_PI * u2);
}

}  // namespace mdn::rng
