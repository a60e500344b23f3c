// The compute kernels, built once per instruction-set level (cpu.hpp), behind one interface.
//
// Everything whose speed or rounding depends on the instructions it is compiled for lives in
// src/kernels/: the matrix products, the network's forward and backward passes (activations and
// their derivatives), the mixture head, the gradient's norm and clipping, the optimizer updates
// and the quantisation of the exact reduction. CMake compiles those sources once per level
// (-march=<level> -mtune=generic, in namespace mdn::<level>), and makes every symbol they define
// private to that level (tools/isolate_level.cmake): template and inline code (Eigen's, the
// standard library's) instantiated for one level can never be merged by the linker with another
// level's copy, so no AVX instruction reaches a CPU without AVX. Each level exports one table of
// entry points (Kernels<S>), found by kernels<S>(level); nothing of a level runs before its
// table is asked for, and the table is only handed out for a level the CPU supports.
//
// Determinism: a kernel's result is a function of the binary, the level and its inputs only:
// the products use fixed blocking (no cache sizes detected at run time), the transcendental
// functions are mdn's own vectorised ones (never the C library's, whose variants are chosen per
// CPU at run time), no approximate instruction (rcp, rsqrt) is used, and every element goes
// through the same instruction sequence wherever it sits in a buffer. The interface carries raw
// pointers and sizes only.
#pragma once

#include <cstdint>
#include <memory>

#include "mdn/cpu.hpp"
#include "mdn/model.hpp"

namespace mdn {

class IndexShuffle;

/// A dense matrix operand: rows x cols at data, with the given outer stride and storage order
/// (inner stride 1). t() is the transpose, a view of the same memory.
template <class T>
struct Operand {
  T* data;
  Index rows;
  Index cols;
  Index stride;
  bool row_major;
  Operand t() const { return {data, cols, rows, stride, !row_major}; }
};

/// One product site: C = A B for shapes up to the maxima it was made for; allocates nothing.
template <class S>
class GemmKernel {
 public:
  virtual ~GemmKernel() = default;
  /// c = a * b. Shapes must agree and be within the maxima; c must not overlap a or b.
  virtual void run(Operand<const S> a, Operand<const S> b, Operand<S> c) = 0;
  /// The blocking: depth, rows and columns of the packed panels.
  virtual Index kc() const = 0;
  virtual Index mc() const = 0;
  virtual Index nc() const = 0;
};

/// The mixture head (mixture.hpp) for up to max_n samples. Matrices are column-major with the
/// given leading dimension: head (n, O) a sample per row, y (L, n) a sample per column.
template <class S>
class MixtureKernel {
 public:
  virtual ~MixtureKernel() = default;
  virtual double nll(const S* head, Index ld_head, const S* y, Index ld_y, Index n, double* per_sample) = 0;
  /// nll(), and the gradient of the summed NLL with respect to head into dhead (n, O).
  virtual double nll_and_grad(const S* head, Index ld_head, const S* y, Index ld_y, Index n, S* dhead,
                              Index ld_dhead, double* per_sample) = 0;
  /// pi (n, K), mu and sigma (n, K*L) in the network's units, column-major with leading dimension ld;
  /// with full covariance sigma holds the factor's scales s (U_ii = 1 / s_i) and off (n, K*L(L-1)/2)
  /// its off-diagonals (full_covariance.hpp); off may be null.
  virtual void parameters(const S* head, Index ld_head, Index n, double* pi, double* mu, double* sigma, double* off,
                          Index ld) = 0;
};

/// The network (network.hpp) for micro-batches of up to max_n samples. x (D, n) and y (L, n) are
/// column-major with leading dimensions ld_x, ld_y; parameters and gradients use the Layout.
template <class S>
class NetworkKernel {
 public:
  virtual ~NetworkKernel() = default;
  virtual double loss(const S* params, const S* x, Index ld_x, const S* y, Index ld_y, Index n,
                      double* per_sample) = 0;
  /// loss(), and the gradient of the summed NLL written (not added) into grad.
  virtual double loss_and_grad(const S* params, const S* x, Index ld_x, const S* y, Index ld_y, Index n,
                               S* grad) = 0;
  virtual void mixture(const S* params, const S* x, Index ld_x, Index n, double* pi, double* mu, double* sigma,
                       double* off, Index ld) = 0;
};

/// One element-wise update of the optimizers (optimizer.hpp), over n elements of one tensor;
/// every factor is computed by the caller, in double, then rounded once to S.
template <class S>
struct SgdUpdate {
  S grad_scale;  ///< the gradient's factor (the norm clip), 1 for none
  S lr;          ///< the step's learning rate
  S momentum;    ///< mu
  S decay;       ///< weight decay of this tensor (0 for biases)
  bool first;    ///< the first step: v = g
  bool nesterov;
};
template <class S>
struct AdamUpdate {
  S grad_scale;  ///< the gradient's factor (the norm clip), 1 for none
  S step_size;   ///< lr / (1 - beta1^t)
  S bias2_sqrt;  ///< sqrt(1 - beta2^t)
  S beta1, one_minus_beta1, beta2, one_minus_beta2;
  S eps;
  S l2;          ///< adam's L2 decay of this tensor (0 for adamw and for biases)
  S shrink;      ///< adamw's decoupled decay, p *= shrink (1 for adam and for biases)
};

/// The chunk in which dequantize forms its sum of squares (a multiple of sum_squares' block, small
/// enough to stay in the first-level cache between the conversion and the sum). The exact
/// reduction divides its work among ranks in these chunks, so that the sums of squares add up in
/// the same order on any number of ranks.
inline constexpr Index kDequantizeChunk = 4096;

/// A level's entry points for scalar type S.
template <class S>
struct Kernels {
  CpuLevel level;
  std::unique_ptr<GemmKernel<S>> (*gemm)(Index max_rows, Index max_cols, Index max_depth, bool result_row_major);
  /// Eigen's GEMM kernel at this level with a fixed blocking, for every shape: the product mdn
  /// used before its own kernel (benchmarks compare them).
  std::unique_ptr<GemmKernel<S>> (*reference_gemm)(Index max_rows, Index max_cols, Index max_depth,
                                                   bool result_row_major);
  std::unique_ptr<MixtureKernel<S>> (*mixture)(int components, int output_dim, SigmaMode mode, double sigma_min,
                                               Covariance covariance, Index max_n);
  std::unique_ptr<NetworkKernel<S>> (*network)(const ModelSpec& spec, Index max_n);

  /// Sum of squares of n elements, accumulated in double.
  double (*sum_squares)(const S* x, Index n);
  /// Clamps every element to [-limit, limit]; returns whether any was changed.
  bool (*clamp)(S* x, Index n, S limit);
  /// x *= factor.
  void (*scale)(S* x, Index n, S factor);
  /// SGD: p, the gradient g (multiplied by grad_scale as it is read, when that is not 1) and the
  /// momentum buffer v (null without momentum).
  void (*sgd)(S* p, const S* g, S* v, Index n, const SgdUpdate<S>& u);
  /// Adam and AdamW: p, g and the moment buffers m and v.
  void (*adam)(S* p, const S* g, S* m, S* v, Index n, const AdamUpdate<S>& u);
  /// Largest |x| of n elements; NaN or infinity when one is not finite.
  double (*max_abs)(const S* x, Index n);
  /// acc[i] = sum over the `count` buffers x[c] of round(x[c][offset + i] * scale), scale a power
  /// of two: every term exact for |x scale| < 2^63, the sum of integers in any order. One pass
  /// over the buffers, however many there are.
  void (*quantize)(const S* const* x, int count, Index offset, std::int64_t* acc, Index n, double scale);
  /// out[i] = acc[i] * factor, rounded once to S; returns the sum of the squares of out from the
  /// same pass: per chunk of kDequantizeChunk elements (counted from out[0]) in sum_squares'
  /// blocking, the chunks added in order.
  double (*dequantize)(const std::int64_t* acc, S* out, Index n, double factor);
  /// quantize, then dequantize, through a buffer that stays in the first-level cache: the same
  /// out and the same sum of squares as the two calls (for a sum that has no other rank's terms
  /// to add, it saves writing and reading the integers).
  double (*round_trip)(const S* const* x, int count, Index offset, S* out, Index n, double scale, double factor);
  /// IndexShuffle::encrypt_lanes (or decrypt_lanes with `inverse`) of x[0, kBlock) compiled for
  /// this level: integer operations, the same results at every level (the epoch start's cost is
  /// mostly these rounds' shifts and multiplies).
  void (*shuffle_lanes)(const IndexShuffle& s, std::uint64_t* x, bool inverse);
};

/// The kernels of `level` for S. The level must be built and supported by this CPU (checked:
/// a violation is a programmer error and aborts with a message).
template <class S>
const Kernels<S>& kernels(CpuLevel level);

}  // namespace mdn
