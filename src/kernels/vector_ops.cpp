// Element-wise kernels over the flat parameter and gradient buffers: the gradient's norm and
// clipping, the optimizer updates, the exact reduction's quantisation.
//
// The loops without a reduction are plain C++ (the compiler vectorises them; with FMA
// contraction off, vectorised and scalar iterations round alike). The reductions use explicit
// packets in a fixed order, so their result depends on the level only.
#include "level.hpp"
#include "mdn/shuffle.hpp"

#include <immintrin.h>

#include <cmath>
#include <limits>
#include <type_traits>

namespace mdn::MDN_LEVEL {

namespace {

/// Sum of squares: blocks of 256 elements summed in S packets (short sums), the blocks in double.
template <class S>
double sum_squares(const S* x, Index n) {
  using PS = Packet<S>;
  constexpr Index P = kPacket<S>;
  constexpr Index kBlock = 256;  // a multiple of every packet size
  double sum = 0;
  Index i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    PS acc0 = ei::pset1<PS>(S(0)), acc1 = acc0;
    for (Index k = 0; k < kBlock; k += 2 * P) {
      const PS a = ei::ploadu<PS>(x + i + k), b = ei::ploadu<PS>(x + i + k + P);
      acc0 = ei::padd(acc0, ei::pmul(a, a));
      acc1 = ei::padd(acc1, ei::pmul(b, b));
    }
    sum += static_cast<double>(ei::predux(ei::padd(acc0, acc1)));
  }
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return sum;
}

template <class S>
bool clamp(S* x, Index n, S limit) {
  bool changed = false;
  for (Index i = 0; i < n; ++i) {
    const bool high = x[i] > limit, low = x[i] < -limit;
    changed |= high | low;
    x[i] = high ? limit : (low ? -limit : x[i]);
  }
  return changed;
}

template <class S>
void scale(S* x, Index n, S factor) {
  for (Index i = 0; i < n; ++i) x[i] *= factor;
}

template <class S>
void sgd(S* p, const S* g0, S* v, Index n, const SgdUpdate<S>& u) {
  const bool scaled = u.grad_scale != S(1);
  if (v == nullptr) {
    for (Index i = 0; i < n; ++i) {
      const S g = scaled ? g0[i] * u.grad_scale : g0[i];
      p[i] -= u.lr * (g + u.decay * p[i]);
    }
    return;
  }
  for (Index i = 0; i < n; ++i) {
    const S g = (scaled ? g0[i] * u.grad_scale : g0[i]) + u.decay * p[i];
    v[i] = u.first ? g : u.momentum * v[i] + g;
    p[i] -= u.nesterov ? u.lr * (g + u.momentum * v[i]) : u.lr * v[i];
  }
}

template <class S>
void adam(S* p, const S* g0, S* m, S* v, Index n, const AdamUpdate<S>& u) {
  const bool scaled = u.grad_scale != S(1);
  for (Index i = 0; i < n; ++i) {
    const S q = p[i] * u.shrink;
    const S g = (scaled ? g0[i] * u.grad_scale : g0[i]) + u.l2 * q;
    m[i] = u.beta1 * m[i] + u.one_minus_beta1 * g;
    v[i] = u.beta2 * v[i] + u.one_minus_beta2 * (g * g);
    p[i] = q - u.step_size * m[i] / (std::sqrt(v[i]) / u.bias2_sqrt + u.eps);
  }
}

/// Largest |x|; NaN when an element is not finite (x * 0 is NaN exactly for those).
template <class S>
double max_abs(const S* x, Index n) {
  using PS = Packet<S>;
  constexpr Index P = kPacket<S>;
  PS m = ei::pset1<PS>(S(0)), bad = m;
  Index i = 0;
  for (; i + P <= n; i += P) {
    const PS a = ei::ploadu<PS>(x + i);
    m = ei::pmax(m, ei::pabs(a));
    bad = ei::padd(bad, ei::pmul(a, ei::pset1<PS>(S(0))));
  }
  double best = static_cast<double>(ei::predux_max(m));
  double flag = static_cast<double>(ei::predux(bad));
  for (; i < n; ++i) {
    best = std::max(best, static_cast<double>(std::abs(x[i])));
    flag += static_cast<double>(x[i]) * 0.0;
  }
  return flag == 0 ? best : std::numeric_limits<double>::quiet_NaN();
}

// Rounding to the nearest integer (ties to even: the default rounding mode, which mdn never
// changes), exact for every |value| < 2^63, which the quantum guarantees: std::llrint is inlined
// as cvtsd2si; with AVX-512 DQ eight at a time (vcvtpd2qq); with AVX2, which has no conversion
// between doubles and int64, four at a time in integer registers (llrint_avx2): the same integers.
#if defined(__AVX2__) && !defined(__AVX512DQ__)
/// llrint of four doubles, |v| < 2^63. Below 2^52 the magnitude is rounded by adding 2^52 (the
/// sum's last bit is the unit, so the addition rounds to nearest even, as cvtsd2si does; a
/// magnitude that rounds up to 2^53 gives 2^52 in the difference of the bits, also right); from
/// 2^52 up the double is an integer already, its significand shifted by its exponent. The sign
/// is applied last, as two's complement: rounding to nearest even is symmetric.
inline __m256i llrint_avx2(__m256d v) {
  const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
  const __m256d sign_bit = _mm256_set1_pd(-0.0);
  const __m256d a = _mm256_andnot_pd(sign_bit, v);
  const __m256i small = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(a, two52)), _mm256_castpd_si256(two52));
  const __m256i bits = _mm256_castpd_si256(a);
  const __m256i significand = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x((std::int64_t{1} << 52) - 1)),
                                               _mm256_set1_epi64x(std::int64_t{1} << 52));
  const __m256i shift = _mm256_sub_epi64(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(1075));
  const __m256i large = _mm256_sllv_epi64(significand, shift);  // a shift past 63 (small lanes) gives 0
  const __m256i is_small = _mm256_castpd_si256(_mm256_cmp_pd(a, two52, _CMP_LT_OQ));
  const __m256i r = _mm256_blendv_epi8(large, small, is_small);
  const __m256i negative = _mm256_castpd_si256(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ));
  return _mm256_sub_epi64(_mm256_xor_si256(r, negative), negative);
}

/// Four int64 to double, rounded to nearest even as cvtsi2sd does, for every int64 (the split of
/// the "full range" conversion in Agner Fog's vector class library and on Stack Overflow by
/// Mysticial): the upper 16 bits, times 2^48, and the lower 48 become exact doubles in the
/// mantissas of 3·2^67 and 2^52; one subtraction (exact) and one addition (the single rounding)
/// give the value.
inline __m256d int64_to_double_avx2(__m256i x) {
  __m256i high = _mm256_srai_epi32(x, 16);
  high = _mm256_blend_epi16(high, _mm256_setzero_si256(), 0x33);
  high = _mm256_add_epi64(high, _mm256_castpd_si256(_mm256_set1_pd(442721857769029238784.0)));  // 3·2^67
  const __m256i low = _mm256_blend_epi16(x, _mm256_castpd_si256(_mm256_set1_pd(4503599627370496.0)), 0x88);  // 2^52
  const __m256d f = _mm256_sub_pd(_mm256_castsi256_pd(high), _mm256_set1_pd(442726361368656609280.0));  // 3·2^67 + 2^52
  return _mm256_add_pd(f, _mm256_castsi256_pd(low));
}
#endif

template <class S>
void quantize(const S* const* x, int count, Index offset, std::int64_t* acc, Index n, double scale) {
  Index i = 0;
#if defined(__AVX512DQ__)
  if constexpr (std::is_same_v<S, float>) {
    const __m512d s = _mm512_set1_pd(scale);
    for (; i + 8 <= n; i += 8) {
      __m512i sum = _mm512_setzero_si512();
      for (int c = 0; c < count; ++c) {
        const __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x[c] + offset + i));
        sum = _mm512_add_epi64(sum, _mm512_cvtpd_epi64(_mm512_mul_pd(d, s)));
      }
      _mm512_storeu_si512(acc + i, sum);
    }
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<S, float>) {
    const __m256d s = _mm256_set1_pd(scale);
    for (; i + 4 <= n; i += 4) {
      __m256i sum = _mm256_setzero_si256();
      for (int c = 0; c < count; ++c) {
        const __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(x[c] + offset + i));
        sum = _mm256_add_epi64(sum, llrint_avx2(_mm256_mul_pd(d, s)));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i), sum);
    }
  }
#endif
  for (; i < n; ++i) {
    std::int64_t sum = 0;
    for (int c = 0; c < count; ++c) sum += std::llrint(static_cast<double>(x[c][offset + i]) * scale);
    acc[i] = sum;
  }
}

template <class S>
double dequantize(const std::int64_t* acc, S* out, Index n, double factor) {
  constexpr Index kChunk = kDequantizeChunk;
  double sum = 0;
  for (Index i0 = 0; i0 < n; i0 += kChunk) {
    const Index len = std::min(kChunk, n - i0);
    Index i = i0;
#if defined(__AVX2__) && !defined(__AVX512DQ__)
    if constexpr (std::is_same_v<S, float>) {
      const __m256d f = _mm256_set1_pd(factor);
      for (; i + 4 <= i0 + len; i += 4) {
        const __m256d d = int64_to_double_avx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i)));
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(d, f)));
      }
    }
#endif
    for (; i < i0 + len; ++i) out[i] = static_cast<S>(static_cast<double>(acc[i]) * factor);
    sum += sum_squares(out + i0, len);
  }
  return sum;
}

/// out[i] = (S)(rint((double)x[i] * scale) * factor), rounding to nearest even.
template <class S>
void round_one(const S* x, S* out, Index n, double scale, double factor) {
  Index i = 0;
  if constexpr (std::is_same_v<S, float>) {
#if defined(__AVX512F__)
    const __m512d s = _mm512_set1_pd(scale), f = _mm512_set1_pd(factor);
    for (; i + 8 <= n; i += 8) {
      const __m512d v = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), s);
      const __m512d r = _mm512_roundscale_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_mul_pd(r, f)));
    }
#elif defined(__AVX__)
    const __m256d s = _mm256_set1_pd(scale), f = _mm256_set1_pd(factor);
    for (; i + 4 <= n; i += 4) {
      const __m256d v = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), s);
      const __m256d r = _mm256_round_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(r, f)));
    }
#endif
  }
  for (; i < n; ++i) out[i] = static_cast<S>(std::nearbyint(static_cast<double>(x[i]) * scale) * factor);
}

template <class S>
double round_trip(const S* const* x, int count, Index offset, S* out, Index n, double scale, double factor) {
  // dequantize's chunk: each call's sum of squares is that chunk's, added in the same order.
  constexpr Index kChunk = kDequantizeChunk;
  alignas(64) std::int64_t acc[kChunk];
  double sum = 0;
  for (Index i0 = 0; i0 < n; i0 += kChunk) {
    const Index len = std::min(kChunk, n - i0);
    if (count == 1 && std::is_same_v<S, float>) {
      // One source: the integer never needs int64. rint(v) is the integer llrint(v) gives, as a
      // double (an integer-valued double below 2^63 converts to int64 and back exactly), so
      // rint(x scale) factor has the two passes' bits, in vector registers at every level.
      round_one(x[0] + offset + i0, out + i0, len, scale, factor);
      sum += sum_squares(out + i0, len);
    } else {
      quantize(x, count, offset + i0, acc, len, scale);
      sum += dequantize(acc, out + i0, len, factor);
    }
  }
  return sum;
}

}  // namespace

template <class S>
std::unique_ptr<GemmKernel<S>> make_gemm(Index, Index, Index, bool);
template <class S>
std::unique_ptr<GemmKernel<S>> make_reference_gemm(Index, Index, Index, bool);
template <class S>
std::unique_ptr<MixtureKernel<S>> make_mixture(int, int, SigmaMode, double, Covariance, Index);
template <class S>
std::unique_ptr<NetworkKernel<S>> make_network(const ModelSpec&, Index);

void shuffle_lanes(const IndexShuffle& s, std::uint64_t* x, bool inverse) {
  if (inverse) s.decrypt_lanes(x);
  else s.encrypt_lanes(x);
}

}  // namespace mdn::MDN_LEVEL

// ---- the level's tables: the only symbols of this level that the rest of mdn sees ----------------

#define MDN_CONCAT2(a, b) a##b
#define MDN_CONCAT(a, b) MDN_CONCAT2(a, b)

namespace {
template <class S>
constexpr mdn::Kernels<S> table() {
  namespace l = mdn::MDN_LEVEL;
  // The factories' objects flush denormals in their own methods; the functions through Flushed.
  return {MDN_LEVEL_ENUM,
          &l::make_gemm<S>,
          &l::make_reference_gemm<S>,
          &l::make_mixture<S>,
          &l::make_network<S>,
          &l::Flushed<&l::sum_squares<S>>::call,
          &l::Flushed<&l::clamp<S>>::call,
          &l::Flushed<&l::scale<S>>::call,
          &l::Flushed<&l::sgd<S>>::call,
          &l::Flushed<&l::adam<S>>::call,
          &l::Flushed<&l::max_abs<S>>::call,
          &l::Flushed<&l::quantize<S>>::call,
          &l::Flushed<&l::dequantize<S>>::call,
          &l::Flushed<&l::round_trip<S>>::call,
          &l::shuffle_lanes};
}
}  // namespace

// Constant-initialised (no code runs to build them): mdn_kernels_<level>_f and _d.
extern "C" const mdn::Kernels<float> MDN_CONCAT(MDN_CONCAT(mdn_kernels_, MDN_LEVEL), _f) = table<float>();
extern "C" const mdn::Kernels<double> MDN_CONCAT(MDN_CONCAT(mdn_kernels_, MDN_LEVEL), _d) = table<double>();
