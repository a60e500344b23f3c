// Inside one instruction-set level's kernels (kernels.hpp). The sources of src/kernels/ are
// compiled once per level by CMake with MDN_LEVEL (the namespace, e.g. x86_64_v3) and
// MDN_LEVEL_ENUM (its CpuLevel) defined; nothing here may be included by other code.
//
// Rules for code in this directory:
//   - no static objects with constructors (the build refuses a level object with initialisers:
//     they would run at start-up on every CPU, before the level is chosen);
//   - no call to the C library's transcendental functions (exp, log, tanh, pow, ...: glibc picks
//     their variants per CPU at run time) and no approximate instructions: the packet functions
//     below give every element the same instruction sequence, wherever it sits in a buffer;
//   - no allocation after construction.
#pragma once

#ifndef MDN_LEVEL
#error "src/kernels/ is compiled once per level by CMake (MDN_LEVEL, MDN_LEVEL_ENUM)"
#endif

#include <Eigen/Core>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "mdn/error.hpp"
#include "mdn/kernels.hpp"

namespace mdn::MDN_LEVEL {

namespace ei = Eigen::internal;

/// Inside the kernels, denormal numbers are flushed to zero (MXCSR's FTZ and DAZ bits, set on
/// entry and restored on exit): a result below the smallest normal number (2^-126 in float,
/// 2^-1022 in double) becomes zero, and a denormal input counts as zero. Without it, every
/// operation that produces or reads a denormal takes a microcode assist of a hundred cycles or
/// more: a sharp mixture's responsibilities and their gradients produce them in every step
/// (measured: 20% of the medium model's training time with Adam). The behaviour is
/// architectural, the same on every x86-64 CPU, and it makes the kernels' results independent
/// of the caller's floating-point mode.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtzDaz); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static constexpr unsigned kFtzDaz = 0x8040;  // FTZ (bit 15), DAZ (bit 6)
  unsigned saved_;
};

/// F with denormals flushed for its duration: the entry points of the kernels' table.
template <auto F>
struct Flushed;
template <class R, class... A, R (*F)(A...)>
struct Flushed<F> {
  static R call(A... args) {
    const FlushDenormals flush;
    return F(args...);
  }
};

/// The widest packet of S at this level, and its size.
template <class S>
using Packet = typename ei::packet_traits<S>::type;
template <class S>
constexpr Index kPacket = ei::unpacket_traits<Packet<S>>::size;

/// Rows of the padded workspaces: a multiple of every packet size of every level, so that
/// element-wise passes over n_pad rows are whole packets.
constexpr Index kPad = 16;
inline Index padded(Index n) { return (n + kPad - 1) / kPad * kPad; }

/// Applies the packet function f to n elements from `in` to `out` (which may be the same):
/// whole packets, then the tail through a packet-sized buffer, so that every element goes
/// through the same instructions (a scalar tail would use other ones).
template <class S, class F>
inline void apply(const S* in, S* out, Index n, F f) {
  constexpr Index P = kPacket<S>;
  Index i = 0;
  for (; i + P <= n; i += P) ei::pstoreu(out + i, f(ei::ploadu<Packet<S>>(in + i)));
  if (i < n) {
    alignas(64) S buf[P] = {};
    std::copy(in + i, in + n, buf);
    ei::pstore(buf, f(ei::pload<Packet<S>>(buf)));
    std::copy(buf, buf + (n - i), out + i);
  }
}

// ---- transcendental functions on packets ---------------------------------------------------------

/// log(1 + x) for x >= 0: with w = 1 + x rounded, log(w) * x / (w - 1) corrects the rounding of
/// w to within a few ulps (Goldberg, "What every computer scientist should know about
/// floating-point arithmetic", theorem 4); x itself where w rounds to 1.
template <class P>
inline P plog1p_nonneg(const P& x) {
  const P one = ei::pset1<P>(1);
  const P w = ei::padd(one, x);
  const P d = ei::psub(w, one);
  const P r = ei::pdiv(ei::pmul(ei::plog(w), x), ei::pselect(ei::pcmp_eq(d, ei::pzero(d)), one, d));
  return ei::pselect(ei::pcmp_eq(d, ei::pzero(d)), x, r);
}

/// tanh: float uses Eigen's rational approximation (a few ulps); double, which Eigen does not
/// vectorise, Cephes's: x + x^3 P(x^2)/Q(x^2) below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above.
inline Packet<float> ptanh(const Packet<float>& x) { return ei::ptanh(x); }
inline Packet<double> ptanh(const Packet<double>& x) {
  using P = Packet<double>;
  const P ax = ei::pabs(x);
  const P s = ei::pmul(x, x);
  // Cephes tanh.c, |x| < 0.625: relative error below 2.2e-16.
  P p = ei::pset1<P>(-9.64399179425052238628e-1);
  p = ei::padd(ei::pmul(p, s), ei::pset1<P>(-9.92877231001918586564e1));
  p = ei::padd(ei::pmul(p, s), ei::pset1<P>(-1.61468768441708447952e3));
  P q = ei::padd(s, ei::pset1<P>(1.12811678491632931402e2));
  q = ei::padd(ei::pmul(q, s), ei::pset1<P>(2.23548839060100448583e3));
  q = ei::padd(ei::pmul(q, s), ei::pset1<P>(4.84406305325125486048e3));
  const P small = ei::padd(x, ei::pmul(x, ei::pdiv(ei::pmul(s, p), q)));
  // Larger |x|: exp(2|x|) overflows to infinity beyond |x| ~ 355, which gives exactly 1.
  const P e = ei::pexp(ei::pmin(ei::padd(ax, ax), ei::pset1<P>(700.0)));
  const P big_abs = ei::psub(ei::pset1<P>(1), ei::pdiv(ei::pset1<P>(2), ei::padd(e, ei::pset1<P>(1))));
  const P big = ei::pselect(ei::pcmp_lt(x, ei::pzero(x)), ei::pnegate(big_abs), big_abs);
  return ei::pselect(ei::pcmp_lt(ax, ei::pset1<P>(0.625)), small, big);
}

// ---- the level's classes -------------------------------------------------------------------------

/// Packing buffers shared by the products that run one after another (one per network).
template <class S>
struct GemmWorkspace {
  std::vector<S, Eigen::aligned_allocator<S>> a;
  std::vector<S, Eigen::aligned_allocator<S>> b;
};

/// What a product does to C after the sum, in the same pass: add a bias per row or per column,
/// then an activation (the forward pass of a layer).
enum class Act { none, tanh, relu };
template <class S>
struct Epilogue {
  const S* row_bias = nullptr;  ///< (rows of C), or none
  const S* col_bias = nullptr;  ///< (columns of C), or none
  Act activation = Act::none;
  bool any() const { return row_bias != nullptr || col_bias != nullptr || activation != Act::none; }
};

/// One product site: C = A B with fixed maximum shapes (gemm.cpp). Float products large enough
/// to fill the register tile run mdn's own kernel; the others (and double) Eigen's.
template <class S>
class Gemm {
 public:
  /// eigen_only: Eigen's kernel for every shape (the reference product of benchmarks).
  Gemm(Index max_rows, Index max_cols, Index max_depth, bool result_row_major, GemmWorkspace<S>& ws,
       bool eigen_only = false);
  void run(Operand<const S> a, Operand<const S> b, Operand<S> c, const Epilogue<S>& epilogue = {}) const;
  Index kc() const { return kc_; }
  Index mc() const { return mc_; }
  Index nc() const { return nc_; }

 private:
  void run_eigen(const Operand<const S>& a, const Operand<const S>& b, const Operand<S>& c) const;

  GemmWorkspace<S>* ws_;
  bool result_row_major_;
  bool eigen_only_;
  Index max_rows_, max_cols_, max_depth_;  // of the column-major problem
  Index kc_ = 0, mc_ = 0, nc_ = 0;         // Eigen's blocking
};

/// The mixture head (mixture.cpp; the math is in include/mdn/mixture.hpp and, for full
/// covariance, include/mdn/full_covariance.hpp).
template <class S>
class MixtureHead final : public MixtureKernel<S> {
 public:
  MixtureHead(int components, int output_dim, SigmaMode mode, double sigma_min, Covariance covariance, Index max_n);
  double nll(const S* head, Index ld_head, const S* y, Index ld_y, Index n, double* per_sample) override;
  double nll_and_grad(const S* head, Index ld_head, const S* y, Index ld_y, Index n, S* dhead, Index ld_dhead,
                      double* per_sample) override;
  void parameters(const S* head, Index ld_head, Index n, double* pi, double* mu, double* sigma, double* off,
                  Index ld) override;

 private:
  /// A raw scale's log sigma, 1 / sigma and (dsigma/draw) / sigma.
  struct Scale {
    Packet<double> logsig, inv, dscale;
  };
  Scale scale(const Packet<double>& raw) const;
  /// Loads the head (and y) into the padded double workspaces, then the forward pass.
  double forward(const S* head, Index ld_head, const S* y, Index ld_y, Index n, double* per_sample);
  void load(const S* head, Index ld_head, Index n);

  int K_, L_, F_, O_;  // F_: off-diagonal factors per component (0: diagonal)
  SigmaMode mode_;
  double sigma_min_, log_sigma_min_;
  Index max_n_, pad_n_;  // workspaces have pad_n_ = padded(max_n) rows, column-major
  Eigen::ArrayXXd h_;      // (pad_n, O)    head outputs in double; rows past n are 0
  Eigen::ArrayXXd y_;      // (pad_n, L)    targets, transposed
  Eigen::ArrayXXd log_pi_; // (pad_n, K)
  Eigen::ArrayXXd comp_;   // (pad_n, K)    log pi_k + log N_k
  Eigen::ArrayXXd z_;      // (pad_n, K*L)  (y - mu) / sigma; full: v = U (y - mu)
  Eigen::ArrayXXd inv_;    // (pad_n, K*L)  1 / sigma
  Eigen::ArrayXXd dscale_; // (pad_n, K*L)  (dsigma/draw) / sigma
  Eigen::ArrayXXd logsig_; // (pad_n, K*L)  log sigma
  Eigen::ArrayXXd r_;      // (pad_n, K*L)  full: y - mu (no rows when diagonal)
  Eigen::ArrayXd lse_;     // (pad_n)       log p(y | x)
  Eigen::ArrayXXd d_;      // (pad_n, O)    gradient in double
};

}  // namespace mdn::MDN_LEVEL
