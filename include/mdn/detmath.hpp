// Elementary functions with the same result on every CPU.
//
// The C library's exp, log, pow, cos, tanh, ... are chosen per CPU at run time (glibc has FMA
// variants of each), so their last bits depend on the node. Wherever a result feeds training,
// evaluation or sampling, mdn uses these instead: pure arithmetic, the same instructions on every
// CPU that runs the binary. (The kernels of each level have their own, vectorised: kernels.hpp.)
#pragma once

#include <cstdint>

namespace mdn::det {

/// e^x, to about 1 ulp (Eigen's packet algorithm on this build's baseline instructions).
double exp(double x);
/// Natural logarithm, to about 1 ulp; -inf at 0, NaN below.
double log(double x);
/// cos(x) for |x| <= 1e6, to a few ulps (reduction by pi/2 in three parts, Taylor polynomials).
double cos(double x);
/// base^e for an integer e >= 0 by repeated squaring (at most 2 log2(e) roundings).
double pow(double base, std::int64_t e);

}  // namespace mdn::det
