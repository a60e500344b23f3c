#include "mdn/detmath.hpp"

#include <Eigen/Core>

#include <cmath>

namespace mdn::det {

namespace {
namespace ei = Eigen::internal;
using P = ei::packet_traits<double>::type;

/// Round to nearest, ties to even, without the C library (|v| < 2^51).
double round_nearest(double v) {
  constexpr double kBig = 6755399441055744.0;  // 1.5 * 2^52
  return (v + kBig) - kBig;
}
}  // namespace

double exp(double x) { return ei::pfirst(ei::pexp(ei::pset1<P>(x))); }

double log(double x) { return ei::pfirst(ei::plog(ei::pset1<P>(x))); }

double cos(double x) {
  // x = k pi/2 + r, |r| <= pi/4, with pi/2 in three parts (the first two exact in 33 bits each),
  // so that k * part is exact for |k| < 2^20.
  constexpr double kTwoOverPi = 0.63661977236758134308;
  constexpr double kPio2a = 1.57079632673412561417e+00;
  constexpr double kPio2b = 6.07710050630396597660e-11;
  constexpr double kPio2c = 2.02226624879595063154e-21;
  const double k = round_nearest(x * kTwoOverPi);
  const double r = ((x - k * kPio2a) - k * kPio2b) - k * kPio2c;
  const double r2 = r * r;
  // Taylor series to r^16 (cos) and r^17 (sin): the first omitted term is below 2e-18 on |r| <= pi/4.
  double c = 1.0 / 20922789888000.0;  // 1/16!
  c = c * r2 - 1.0 / 87178291200.0;   // 1/14!
  c = c * r2 + 1.0 / 479001600.0;     // 1/12!
  c = c * r2 - 1.0 / 3628800.0;       // 1/10!
  c = c * r2 + 1.0 / 40320.0;         // 1/8!
  c = c * r2 - 1.0 / 720.0;           // 1/6!
  c = c * r2 + 1.0 / 24.0;            // 1/4!
  c = c * r2 - 0.5;
  c = c * r2 + 1.0;
  double s = 1.0 / 355687428096000.0;  // 1/17!
  s = s * r2 - 1.0 / 1307674368000.0;  // 1/15!
  s = s * r2 + 1.0 / 6227020800.0;     // 1/13!
  s = s * r2 - 1.0 / 39916800.0;       // 1/11!
  s = s * r2 + 1.0 / 362880.0;         // 1/9!
  s = s * r2 - 1.0 / 5040.0;           // 1/7!
  s = s * r2 + 1.0 / 120.0;            // 1/5!
  s = s * r2 - 1.0 / 6.0;
  s = s * r2 * r + r;
  switch (static_cast<std::int64_t>(k) & 3) {
    case 0: return c;
    case 1: return -s;
    case 2: return -c;
    default: return s;
  }
}

double pow(double base, std::int64_t e) {
  double result = 1.0;
  double b = base;
  while (e > 0) {
    if (e & 1) result *= b;
    e >>= 1;
    if (e > 0) b *= b;
  }
  return result;
}

}  // namespace mdn::det
