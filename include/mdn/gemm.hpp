// Matrix products with their workspace allocated once and a blocking that does not depend on
// the machine (src/kernels/gemm.cpp): C = A B through the kernels of one level (kernels.hpp).
//
// Eigen's own `C.noalias() = A * B` allocates its packing buffers on every call once they exceed
// EIGEN_STACK_ALLOCATION_LIMIT, and chooses its cache blocking from the cache sizes it detects at
// run time; the depth blocking decides the order of the floating-point sums. A Gemm's result is
// a function of the binary, the level and the shapes only, on every node, and it allocates
// nothing after construction. The network holds its own sites; this one is for tests and
// benchmarks.
#pragma once

#include <Eigen/Core>

#include <memory>

#include "mdn/kernels.hpp"

namespace mdn {

/// Describes an Eigen matrix, map or block with unit inner stride.
template <class Derived>
Operand<const typename Derived::Scalar> operand(const Eigen::MatrixBase<Derived>& m) {
  eigen_assert(m.innerStride() == 1);
  return {m.derived().data(), m.rows(), m.cols(), m.outerStride(), static_cast<bool>(Derived::IsRowMajor)};
}
template <class Derived>
Operand<typename Derived::Scalar> mutable_operand(Eigen::MatrixBase<Derived>& m) {
  eigen_assert(m.innerStride() == 1);
  return {m.derived().data(), m.rows(), m.cols(), m.outerStride(), static_cast<bool>(Derived::IsRowMajor)};
}

/// One product site: C = A B with fixed maximum shapes.
template <class S>
class Gemm {
 public:
  /// For results of up to (max_rows, max_cols) with inner dimension up to max_depth, stored
  /// row-major or column-major as result_row_major says, with the kernels of `level`.
  Gemm(CpuLevel level, Index max_rows, Index max_cols, Index max_depth, bool result_row_major)
      : impl_(kernels<S>(level).gemm(max_rows, max_cols, max_depth, result_row_major)) {}

  /// c = a * b. Shapes must agree and be within the maxima; c must not overlap a or b.
  /// Allocates nothing.
  void run(Operand<const S> a, Operand<const S> b, Operand<S> c) { impl_->run(a, b, c); }

  Index kc() const { return impl_->kc(); }
  Index mc() const { return impl_->mc(); }
  Index nc() const { return impl_->nc(); }

 private:
  std::unique_ptr<GemmKernel<S>> impl_;
};

}  // namespace mdn
