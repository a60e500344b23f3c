#include "mdn/gemm.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cassert>

namespace mdn {

namespace {

// Reference cache sizes for the blocking heuristic (a common server core: 32 KiB L1d, 1 MiB L2,
// 32 MiB L3). Only the blocking depends on them, never the result's correctness.
constexpr std::ptrdiff_t kL1 = 32 * 1024;
constexpr std::ptrdiff_t kL2 = 1024 * 1024;
constexpr std::ptrdiff_t kL3 = 32 * 1024 * 1024;


/// Eigen's level-3 blocking object over buffers that the Gemm owns.
template <class S>
class FixedBlocking : public Eigen::internal::level3_blocking<S, S> {
 public:
  FixedBlocking(S* a, S* b, Index mc, Index nc, Index kc) {
    this->m_blockA = a;
    this->m_blockB = b;
    this->m_mc = mc;
    this->m_nc = nc;
    this->m_kc = kc;
  }
};

template <class S, int LhsOrder, int RhsOrder>
void kernel(Index m, Index n, Index k, const Operand<const S>& a, const Operand<const S>& b,
            const Operand<S>& c, Eigen::internal::level3_blocking<S, S>& blocking) {
  Eigen::internal::general_matrix_matrix_product<Index, S, LhsOrder, false, S, RhsOrder, false,
                                                 Eigen::ColMajor, 1>::run(m, n, k, a.data, a.stride,
                                                                          b.data, b.stride, c.data,
                                                                          1, c.stride, S(1),
                                                                          blocking, nullptr);
}

}  // namespace

template <class S>
Gemm<S>::Gemm(Index max_rows, Index max_cols, Index max_depth, bool result_row_major,
              GemmWorkspace<S>& ws)
    : ws_(&ws),
      result_row_major_(result_row_major),
      max_rows_(result_row_major ? max_cols : max_rows),
      max_cols_(result_row_major ? max_rows : max_cols),
      max_depth_(max_depth) {
  // Set every time: something else in the process may have changed Eigen's cache sizes.
  Eigen::setCpuCacheSizes(kL1, kL2, kL3);
  kc_ = max_depth_;
  mc_ = max_rows_;
  nc_ = max_cols_;
  Eigen::internal::computeProductBlockingSizes<S, S, 1, Index>(kc_, mc_, nc_, 1);
  ws.a.resize(std::max(ws.a.size(), static_cast<std::size_t>(kc_ * mc_)));
  ws.b.resize(std::max(ws.b.size(), static_cast<std::size_t>(kc_ * nc_)));
}

template <class S>
void Gemm<S>::run(Operand<const S> a, Operand<const S> b, Operand<S> c) {
  assert(ws_ != nullptr && c.row_major == result_row_major_);
  if (c.row_major) {  // C = A B  <=>  C^T = B^T A^T, with C^T column-major
    const Operand<const S> at = a.t();
    a = b.t();
    b = at;
    c = c.t();
  }
  const Index m = c.rows;
  const Index n = c.cols;
  const Index k = a.cols;
  assert(a.rows == m && b.rows == k && b.cols == n);
  assert(m <= max_rows_ && n <= max_cols_ && k <= max_depth_);

  // C = 0, then C += A B.
  for (Index j = 0; j < n; ++j) std::fill_n(c.data + j * c.stride, m, S(0));
  if (m == 0 || n == 0 || k == 0) return;

  FixedBlocking<S> blocking(ws_->a.data(), ws_->b.data(), mc_, nc_, kc_);
  if (a.row_major) {
    if (b.row_major) kernel<S, Eigen::RowMajor, Eigen::RowMajor>(m, n, k, a, b, c, blocking);
    else kernel<S, Eigen::RowMajor, Eigen::ColMajor>(m, n, k, a, b, c, blocking);
  } else {
    if (b.row_major) kernel<S, Eigen::ColMajor, Eigen::RowMajor>(m, n, k, a, b, c, blocking);
    else kernel<S, Eigen::ColMajor, Eigen::ColMajor>(m, n, k, a, b, c, blocking);
  }
}

template class Gemm<float>;
template class Gemm<double>;

}  // namespace mdn
