// Matrix products with their workspace allocated once and a blocking that does not depend on
// the machine.
//
// Eigen's `C.noalias() = A * B` allocates its packing buffers on every call once they exceed
// EIGEN_STACK_ALLOCATION_LIMIT, and chooses its cache blocking from the cache sizes it detects
// at run time; the depth blocking decides the order of the floating-point sums. mdn calls Eigen's
// GEMM kernel directly instead, with packing buffers sized once per call site, and with blocking
// sizes computed for fixed reference cache sizes: a product's result is then a function of the
// binary and the shapes only, on every node, and the training step allocates nothing.
#pragma once

#include <Eigen/Core>

#include <vector>

namespace mdn {

using Index = Eigen::Index;

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

/// Describes an Eigen matrix, map or block with unit inner stride.
template <class Derived>
Operand<const typename Derived::Scalar> operand(const Eigen::MatrixBase<Derived>& m) {
  eigen_assert(m.innerStride() == 1);
  return {m.derived().data(), m.rows(), m.cols(), m.outerStride(),
          static_cast<bool>(Derived::IsRowMajor)};
}
template <class Derived>
Operand<typename Derived::Scalar> mutable_operand(Eigen::MatrixBase<Derived>& m) {
  eigen_assert(m.innerStride() == 1);
  return {m.derived().data(), m.rows(), m.cols(), m.outerStride(),
          static_cast<bool>(Derived::IsRowMajor)};
}

/// Packing buffers shared by the products that run one after another (one per Network).
template <class S>
struct GemmWorkspace {
  std::vector<S, Eigen::aligned_allocator<S>> a;
  std::vector<S, Eigen::aligned_allocator<S>> b;
};

/// One product site: C = A B with fixed maximum shapes.
template <class S>
class Gemm {
 public:
  Gemm() = default;
  /// For results of up to (max_rows, max_cols) with inner dimension up to max_depth, stored
  /// row-major or column-major as result_row_major says. Grows ws to what the site needs.
  Gemm(Index max_rows, Index max_cols, Index max_depth, bool result_row_major,
       GemmWorkspace<S>& ws);

  /// c = a * b. Shapes must agree and be within the maxima; c must not overlap a or b.
  /// Allocates nothing.
  void run(Operand<const S> a, Operand<const S> b, Operand<S> c);

  Index kc() const { return kc_; }
  Index mc() const { return mc_; }
  Index nc() const { return nc_; }

 private:
  GemmWorkspace<S>* ws_ = nullptr;
  bool result_row_major_ = false;
  Index max_rows_ = 0;  // of the column-major problem
  Index max_cols_ = 0;
  Index max_depth_ = 0;
  Index kc_ = 0, mc_ = 0, nc_ = 0;
};

extern template class Gemm<float>;
extern template class Gemm<double>;

}  // namespace mdn
