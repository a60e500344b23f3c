// Element-wise kernels over the flat parameter and gradient buffers: the gradient's norm and
// clipping, the optimizer updates, the exact reduction's quantisation.
//
// The loops without a reduction are plain C++ (the compiler vectorises them; with FMA
// contraction off, vectorised and scalar iterations round alike). The reductions use explicit
// packets in a fixed order, so their result depends on the level only.
#include "level.hpp"

#include <cmath>
#include <limits>

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
  if (v == nullptr) {
    for (Index i = 0; i < n; ++i) p[i] -= u.lr * (g0[i] + u.decay * p[i]);
    return;
  }
  for (Index i = 0; i < n; ++i) {
    const S g = g0[i] + u.decay * p[i];
    v[i] = u.first ? g : u.momentum * v[i] + g;
    p[i] -= u.nesterov ? u.lr * (g + u.momentum * v[i]) : u.lr * v[i];
  }
}

template <class S>
void adam(S* p, const S* g0, S* m, S* v, Index n, const AdamUpdate<S>& u) {
  for (Index i = 0; i < n; ++i) {
    const S q = p[i] * u.shrink;
    const S g = g0[i] + u.l2 * q;
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
// changes) with one conversion instruction: std::llrint is inlined as cvtsd2si (vcvtpd2qq where
// AVX-512 DQ vectorises it), exact for every |value| < 2^63, which the quantum guarantees.
template <class S>
void quantize(const S* x, std::int64_t* acc, Index n, double scale, bool first) {
  if (first) {
    for (Index i = 0; i < n; ++i) acc[i] = std::llrint(static_cast<double>(x[i]) * scale);
  } else {
    for (Index i = 0; i < n; ++i) acc[i] += std::llrint(static_cast<double>(x[i]) * scale);
  }
}

template <class S>
void dequantize(const std::int64_t* acc, S* out, Index n, double factor) {
  for (Index i = 0; i < n; ++i) out[i] = static_cast<S>(static_cast<double>(acc[i]) * factor);
}

}  // namespace

template <class S>
std::unique_ptr<GemmKernel<S>> make_gemm(Index, Index, Index, bool);
template <class S>
std::unique_ptr<MixtureKernel<S>> make_mixture(int, int, SigmaMode, double, Index);
template <class S>
std::unique_ptr<NetworkKernel<S>> make_network(const ModelSpec&, Index);

}  // namespace mdn::MDN_LEVEL

// ---- the level's tables: the only symbols of this level that the rest of mdn sees ----------------

#define MDN_CONCAT2(a, b) a##b
#define MDN_CONCAT(a, b) MDN_CONCAT2(a, b)

namespace {
template <class S>
constexpr mdn::Kernels<S> table() {
  namespace l = mdn::MDN_LEVEL;
  return {MDN_LEVEL_ENUM,    &l::make_gemm<S>, &l::make_mixture<S>, &l::make_network<S>,
          &l::sum_squares<S>, &l::clamp<S>,    &l::scale<S>,        &l::sgd<S>,
          &l::adam<S>,        &l::max_abs<S>,  &l::quantize<S>,     &l::dequantize<S>};
}
}  // namespace

// Constant-initialised (no code runs to build them): mdn_kernels_<level>_f and _d.
extern "C" const mdn::Kernels<float> MDN_CONCAT(MDN_CONCAT(mdn_kernels_, MDN_LEVEL), _f) = table<float>();
extern "C" const mdn::Kernels<double> MDN_CONCAT(MDN_CONCAT(mdn_kernels_, MDN_LEVEL), _d) = table<double>();
