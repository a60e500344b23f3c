// The epoch's order: a keyed bijection of [0, N) that can be evaluated at any position.
//
// Every rank needs only the rows of its own micro-batches, so no rank should hold (or draw) a
// permutation of all N rows. IndexShuffle maps a position to a row, and back, in O(1) memory:
//
//   n bits = ceil(log2 N) (at least 2); a position x < 2^n goes through 6 Feistel rounds; round i
//   splits x into a high part h and a low part l of w_i bits (w_0 = floor(n/2), w_{i+1} = n - w_i)
//   and gives x' = l * 2^(n - w_i) + (h XOR F_i(l) mod 2^(n - w_i)), with
//   F_i(v) = mix(v XOR k_i), k_i = rng::bits(seed, stream, i), mix = SplitMix64's finaliser.
//   Each round is a bijection of [0, 2^n); a result >= N goes through the rounds again (cycle
//   walking, as in Grain's index_shuffle and TensorFlow's random_index_shuffle), which gives a
//   bijection of [0, N). As 2^n < 2N, fewer than two passes are needed on average.
//
// The rounds' keys come from (run.seed, epoch) only, so the order does not depend on P. This is
// mdn's permutation scheme "feistel6" (checkpoints record it; see README, "Input data").
#pragma once

#include <array>
#include <cstdint>

namespace mdn {

class IndexShuffle {
 public:
  static constexpr int kRounds = 6;
  static constexpr const char* kScheme = "feistel6";

  /// The order of [0, n) for (seed, stream); n >= 1.
  IndexShuffle(std::uint64_t n, std::uint64_t seed, std::uint64_t stream);

  /// The row at `position` (< n).
  std::uint64_t operator()(std::uint64_t position) const {
    std::uint64_t x = position;
    do x = encrypt(x);
    while (x >= n_);
    return x;
  }
  /// The position of `row` (< n): the inverse.
  std::uint64_t inverse(std::uint64_t row) const {
    std::uint64_t x = row;
    do x = decrypt(x);
    while (x >= n_);
    return x;
  }
  std::uint64_t size() const { return n_; }

 private:
  static std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t encrypt(std::uint64_t x) const {
    int w = low_;
    for (int i = 0; i < kRounds; ++i) {
      const int hw = bits_ - w;  // the high part's width
      const std::uint64_t l = x & mask(w), h = x >> w;
      x = (l << hw) | ((h ^ mix(l ^ key_[i])) & mask(hw));
      w = hw;
    }
    return x;
  }
  std::uint64_t decrypt(std::uint64_t x) const {
    // Round i's width w_i alternates; after kRounds (even) rounds it is back at low_.
    int w = kRounds % 2 == 0 ? low_ : bits_ - low_;
    for (int i = kRounds - 1; i >= 0; --i) {
      const int hw = w;          // round i produced (l << hw) | ..., where hw = bits_ - w_i
      const int wi = bits_ - hw;
      const std::uint64_t l = x >> hw;
      const std::uint64_t h = (x ^ mix(l ^ key_[i])) & mask(hw);
      x = (h << wi) | l;
      w = wi;
    }
    return x;
  }
  static std::uint64_t mask(int w) { return w >= 64 ? ~0ULL : (1ULL << w) - 1; }

  std::uint64_t n_;
  int bits_ = 2;
  int low_ = 1;
  std::array<std::uint64_t, kRounds> key_{};
};

}  // namespace mdn
