#include "mdn/shuffle.hpp"

#include "mdn/error.hpp"
#include "mdn/random.hpp"

namespace mdn {

IndexShuffle::IndexShuffle(std::uint64_t n, std::uint64_t seed, std::uint64_t stream) : n_(n) {
  MDN_CHECK(n >= 1 && n < (1ULL << 62));
  while (bits_ < 64 && (1ULL << bits_) < n) ++bits_;
  low_ = bits_ / 2;
  for (int i = 0; i < kRounds; ++i) {
    key_[static_cast<std::size_t>(i)] = rng::bits(seed, stream, 2 * static_cast<std::uint64_t>(i));
    mul_[static_cast<std::size_t>(i)] = rng::bits(seed, stream, 2 * static_cast<std::uint64_t>(i) + 1) | 1;
  }
}

}  // namespace mdn
