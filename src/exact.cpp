#include "mdn/exact.hpp"

#include <cmath>
#include <cstring>

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

namespace mdn {

namespace {

/// A fixed-point integer: value = sum_i d[i] 2^(32 (i - kBelow) + ExactMoments::kLowest), in two's
/// complement modulo 2^(32 kDigits): normalised, every digit is in [0, 2^32) except the top one,
/// which is in [-2^31, 2^31) and carries the sign. kBelow digits under 2^kLowest take the partial
/// products of a multiplication by a small power of two before their carries are resolved.
class Fixed {
 public:
  static constexpr int kBelow = 40;
  static constexpr int kDigits = kBelow + ExactMoments::kBuckets + 8;
  Fixed() : d_(kDigits, 0) {}

  /// Digit i of the value in units of 2^kLowest (i >= 0).
  std::int64_t& digit(int i) { return d_[static_cast<std::size_t>(i + kBelow)]; }

  void normalise() {
    for (int i = 0; i + 1 < kDigits; ++i) {
      const std::int64_t carry = d_[static_cast<std::size_t>(i)] >> 32;  // floor division
      d_[static_cast<std::size_t>(i)] -= carry * (std::int64_t{1} << 32);
      d_[static_cast<std::size_t>(i) + 1] += carry;
    }
    // Modulo 2^(32 kDigits): the top digit's low 32 bits, sign-extended.
    d_.back() = static_cast<std::int32_t>(static_cast<std::uint32_t>(d_.back() & 0xffffffff));
  }

  /// this += a * mult * 2^shift exactly (|mult| < 2^62; a normalised). The product's bits below
  /// 2^(kLowest - 32 kBelow) must be zero, which the callers' values guarantee.
  void add_product(const Fixed& a, std::int64_t mult, int shift) {
    __extension__ typedef __int128 Int;
    const int q = shift >= 0 ? shift / 32 : -((-shift + 31) / 32);
    const int r = shift - 32 * q;  // 0 <= r < 32
    for (int i = 0; i < kDigits; ++i) {
      const std::int64_t ai = a.d_[static_cast<std::size_t>(i)];
      if (ai == 0) continue;
      // |ai| <= 2^32, |mult| < 2^62, r < 32: |t| < 2^126.
      Int t = static_cast<Int>(ai) * mult;
      t *= static_cast<Int>(1) << r;
      for (int piece = 0; piece < 4; ++piece, t >>= 32) {
        const int at = i + q + piece;
        const std::int64_t part = piece < 3 ? static_cast<std::int64_t>(t & 0xffffffff) : static_cast<std::int64_t>(t);
        if (at >= kDigits) break;  // modulo 2^(32 kDigits)
        MDN_CHECK(at >= 0 || part == 0);
        if (at >= 0) d_[static_cast<std::size_t>(at)] += part;
      }
      if (i % 8 == 7) normalise();  // keep the digits far from overflow
    }
    normalise();
  }

  /// 2^e (e >= kLowest - 32 kBelow).
  static Fixed power_of_two(int e) {
    Fixed f;
    const int at = e - ExactMoments::kLowest + 32 * kBelow;
    MDN_CHECK(at >= 0 && at < 32 * (kDigits - 1));
    f.d_[static_cast<std::size_t>(at / 32)] = std::int64_t{1} << (at % 32);
    return f;
  }

  /// The nearest double (ties to even; the subnormal range, irrelevant for statistics, may round
  /// twice).
  double to_double() const {
    std::vector<std::int64_t> m = d_;
    const bool negative = m.back() < 0;
    if (negative) {  // two's complement: invert and add one
      for (auto& x : m) x = ~x & 0xffffffff;
      m.back() = ~d_.back();
      m[0] += 1;
      for (std::size_t i = 0; i + 1 < m.size(); ++i) {
        m[i + 1] += m[i] >> 32;
        m[i] &= 0xffffffff;
      }
    }
    int top = kDigits - 1;
    while (top >= 0 && m[static_cast<std::size_t>(top)] == 0) --top;
    if (top < 0) return 0.0;
    // The top 64 bits, from three digits, with every lower bit folded into a sticky bit.
    __extension__ typedef unsigned __int128 U128;
    U128 bits = 0;
    for (int i = top; i >= top - 2; --i)
      bits = (bits << 32) | static_cast<std::uint64_t>(i >= 0 ? m[static_cast<std::size_t>(i)] : 0);
    bool sticky = false;
    for (int i = top - 3; i >= 0; --i) sticky |= m[static_cast<std::size_t>(i)] != 0;
    int lz = 0;
    while (lz < 96 && !((bits >> (95 - lz)) & 1)) ++lz;
    bits <<= lz;  // the leading one at bit 95
    std::uint64_t top64 = static_cast<std::uint64_t>(bits >> 32);
    sticky |= static_cast<std::uint32_t>(bits) != 0;
    top64 |= sticky ? 1 : 0;  // below the 54th bit: rounds like the exact value
    const double v = std::ldexp(static_cast<double>(top64),
                                32 * (top - 2 - kBelow) + ExactMoments::kLowest + 32 - lz);
    return negative ? -v : v;
  }

  /// The double v as a fixed-point integer (exact).
  static Fixed of(double v) {
    Fixed f;
    if (v == 0) return f;
    int e = 0;
    const double m = std::frexp(v, &e);  // v = m 2^e, 0.5 <= |m| < 1
    f.add_product(power_of_two(e - 53), static_cast<std::int64_t>(std::ldexp(m, 53)), 0);
    return f;
  }

 private:
  std::vector<std::int64_t> d_;
};

}  // namespace

ExactMoments::ExactMoments(Index columns)
    : columns_(columns),
      sum_(static_cast<std::size_t>(columns * kBuckets), 0),
      square_(static_cast<std::size_t>(columns * kBuckets), 0) {}

void ExactMoments::add(Index f, double v) {
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof u);
  const int biased = static_cast<int>((u >> 52) & 0x7ff);
  std::int64_t M = static_cast<std::int64_t>(u & ((std::uint64_t{1} << 52) - 1));
  int E = -1074;
  if (biased != 0) {
    M |= std::int64_t{1} << 52;
    E = biased - 1075;
  }
  if (M == 0) return;
  Int* s = sum_.data() + f * kBuckets;
  Int* q = square_.data() + f * kBuckets;
  put(s, (u >> 63) ? -M : M, E);
  // M^2 = hi^2 2^52 + 2 hi lo 2^26 + lo^2, with M = hi 2^26 + lo: parts below 2^54.
  const std::int64_t hi = M >> 26, lo = M & ((1 << 26) - 1);
  put(q, hi * hi, 2 * E + 52);
  put(q, 2 * hi * lo, 2 * E + 26);
  put(q, lo * lo, 2 * E);
}

void ExactMoments::finish(std::int64_t N, Comm& comm, Eigen::VectorXd& mean, Eigen::VectorXd& stddev) {
  // Every bucket as four 32-bit limbs (the top one signed) in int64: their sums over ranks cannot
  // overflow.
  constexpr int kLimbs = 4;
  const std::size_t cells = static_cast<std::size_t>(columns_) * kBuckets;
  std::vector<std::int64_t> limbs(2 * cells * kLimbs);
  const auto split = [&](const std::vector<Int>& b, std::size_t at) {
    for (std::size_t c = 0; c < cells; ++c)
      for (int l = 0; l < kLimbs; ++l) {
        const Int v = b[c] >> (32 * l);
        limbs[at + c * kLimbs + static_cast<std::size_t>(l)] =
            l < kLimbs - 1 ? static_cast<std::int64_t>(v & 0xffffffff) : static_cast<std::int64_t>(v);
      }
  };
  split(sum_, 0);
  split(square_, cells * kLimbs);
  comm.allreduce(limbs.data(), limbs.size(), ReduceOp::sum);
  mean.resize(columns_);
  stddev.resize(columns_);
  for (Index f = 0; f < columns_; ++f) {
    Fixed S, Q;
    for (int b = 0; b < kBuckets; ++b)
      for (int l = 0; l < kLimbs; ++l) {
        const std::size_t c = (static_cast<std::size_t>(f) * kBuckets + static_cast<std::size_t>(b)) * kLimbs +
                              static_cast<std::size_t>(l);
        S.digit(b + l) += limbs[c];
        Q.digit(b + l) += limbs[cells * kLimbs + c];
      }
    S.normalise();
    Q.normalise();
    const double m = S.to_double() / static_cast<double>(N);
    // sum (x - m)^2 = Q - 2 m S + N m^2, exactly: m = M 2^e.
    int e = 0;
    const double fr = std::frexp(m, &e);
    const auto M = static_cast<std::int64_t>(std::ldexp(fr, 53));
    e -= 53;
    Fixed V = Q;
    V.add_product(S, -2 * M, e);
    Fixed mm;  // m^2 = M^2 2^(2e): M times (M 2^e)
    mm.add_product(Fixed::of(m), M, e);
    V.add_product(mm, N, 0);
    const double var = V.to_double() / static_cast<double>(N);
    mean(f) = m;
    stddev(f) = var > 0 ? std::sqrt(var) : 1.0;
  }
}

}  // namespace mdn
