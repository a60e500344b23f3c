// The epoch's order: a keyed bijection of [0, N) that can be evaluated at any position.
//
// Every rank needs only the rows of its own micro-batches, so no rank should hold (or draw) a
// permutation of all N rows. IndexShuffle maps a position to a row, and back, in O(1) memory:
//
//   n bits = ceil(log2 N) (at least 2); a position x < 2^n goes through 6 Feistel rounds; round i
//   splits x into a high part h and a low part l of w_i bits (w_0 = floor(n/2), w_{i+1} = n - w_i)
//   and gives x' = l * 2^(n - w_i) + (h XOR F_i(l)), with the multiply-shift hash
//   F_i(v) = ((v XOR k_i) a_i mod 2^64) >> (64 - (n - w_i)) (Dietzfelbinger's universal family: the
//   top bits of the product), k_i = rng::bits(seed, stream, 2i), a_i = rng::bits(seed, stream,
//   2i + 1) with its lowest bit set.
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

  /// encrypt() of kBlock values in lock step.
  void encrypt_lanes(std::uint64_t* x) const {
    int w = low_;
    for (int i = 0; i < kRounds; ++i) {
      const int hw = bits_ - w;
      const std::uint64_t m = mask(w), key = key_[static_cast<std::size_t>(i)], mul = mul_[static_cast<std::size_t>(i)];
      const int down = 64 - hw;
      for (int k = 0; k < kBlock; ++k) {
        const std::uint64_t l = x[k] & m, h = x[k] >> w;
        x[k] = (l << hw) | (h ^ (((l ^ key) * mul) >> down));
      }
      w = hw;
    }
  }
  /// decrypt() of kBlock values in lock step (no branch: their dependency chains overlap, where
  /// one value alone waits on each round's multiply).
  static constexpr int kBlock = 16;
  void decrypt_lanes(std::uint64_t* x) const {
    int w = kRounds % 2 == 0 ? low_ : bits_ - low_;
    for (int i = kRounds - 1; i >= 0; --i) {
      const int hw = w, wi = bits_ - hw;
      const std::uint64_t m = mask(hw), key = key_[static_cast<std::size_t>(i)], mul = mul_[static_cast<std::size_t>(i)];
      const int down = 64 - hw;
      for (int k = 0; k < kBlock; ++k) {
        const std::uint64_t l = x[k] >> hw;
        const std::uint64_t h = (x[k] & m) ^ (((l ^ key) * mul) >> down);
        x[k] = (h << wi) | l;
      }
      w = wi;
    }
  }

 private:
  /// Round i's hash of v, `width` bits.
  std::uint64_t f(int i, std::uint64_t v, int width) const {
    return ((v ^ key_[static_cast<std::size_t>(i)]) * mul_[static_cast<std::size_t>(i)]) >> (64 - width);
  }
  std::uint64_t encrypt(std::uint64_t x) const {
    int w = low_;
    for (int i = 0; i < kRounds; ++i) {
      const int hw = bits_ - w;  // the high part's width
      const std::uint64_t l = x & mask(w), h = x >> w;
      x = (l << hw) | (h ^ f(i, l, hw));
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
      const std::uint64_t h = (x & mask(hw)) ^ f(i, l, hw);
      x = (h << wi) | l;
      w = wi;
    }
    return x;
  }
  static std::uint64_t mask(int w) { return w >= 64 ? ~0ULL : (1ULL << w) - 1; }

  std::uint64_t n_;
  int bits_ = 2;
  int low_ = 1;
  std::array<std::uint64_t, kRounds> key_{}, mul_{};
};

/// Values walked through a shuffle, forward (position to row) or inverse (row to position),
/// kBlock at a time in lock step: the stream takes tags [first, last), starts tag t at
/// start(t) (< N), and hands out (tag, result) pairs in an order of its own (nearly the tags'),
/// a lane whose value has arrived taking the next tag, so that no lane idles while another walks.
/// `lanes`, when given, runs the rounds instead of the shuffle's own inline code: the same
/// function compiled for an instruction-set level (Kernels::shuffle_lanes), same results.
template <bool Inverse, class Start>
class ShuffleStream {
 public:
  using Lanes = void (*)(const IndexShuffle& s, std::uint64_t* x, bool inverse);
  ShuffleStream(const IndexShuffle& s, std::uint64_t first, std::uint64_t last, Start start, Lanes lanes = nullptr)
      : s_(s), start_(start), lanes_(lanes), next_(first), last_(last) {
    for (int k = 0; k < IndexShuffle::kBlock; ++k) refill(k);
  }
  /// The next tag and its result; false once every tag has come out.
  bool next(std::uint64_t& tag, std::uint64_t& result) {
    while (ready_ == taken_) {
      if (live_ == 0) return false;
      advance();
    }
    tag = ready_tag_[taken_];
    result = ready_value_[taken_];
    ++taken_;
    return true;
  }

 private:
  void refill(int k) {
    if (next_ < last_) {
      tag_[k] = next_;
      x_[k] = start_(next_++);
      ++live_;
    } else {
      tag_[k] = kNone;
      x_[k] = 0;
    }
  }
  void advance() {
    if (lanes_ != nullptr) lanes_(s_, x_, Inverse);
    else if constexpr (Inverse) s_.decrypt_lanes(x_);
    else s_.encrypt_lanes(x_);
    ready_ = taken_ = 0;
    for (int k = 0; k < IndexShuffle::kBlock; ++k) {
      if (tag_[k] == kNone || x_[k] >= s_.size()) continue;  // idle, or walking on
      ready_tag_[ready_] = tag_[k];
      ready_value_[ready_++] = x_[k];
      --live_;
      refill(k);
    }
  }
  static constexpr std::uint64_t kNone = ~0ULL;
  const IndexShuffle& s_;
  Start start_;
  Lanes lanes_;
  std::uint64_t next_, last_;
  std::uint64_t tag_[IndexShuffle::kBlock], x_[IndexShuffle::kBlock];
  std::uint64_t ready_tag_[IndexShuffle::kBlock], ready_value_[IndexShuffle::kBlock];
  int ready_ = 0, taken_ = 0, live_ = 0;
};

}  // namespace mdn
