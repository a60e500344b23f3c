// The allocation-free GEMM against Eigen's own product, for every storage order, for shapes
// that block along every dimension, and for results smaller than the site's maxima.
#include <gtest/gtest.h>

#include "mdn/gemm.hpp"
#include "mdn/model.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

template <class S>
void check_product(Index m, Index n, Index k, bool a_rm, bool b_rm, bool c_rm) {
  GemmWorkspace<S> ws;
  Gemm<S> gemm(m + 3, n + 5, k + 7, c_rm, ws);  // maxima above the shapes used
  const Mat<S> a = uniform_matrix<S>(m, k, -1, 1, seed(), 1);
  const Mat<S> b = uniform_matrix<S>(k, n, -1, 1, seed(), 2);
  const Mat<S> expected = (a.template cast<double>() * b.template cast<double>()).template cast<S>();
  const RowMat<S> a_r = a;
  const RowMat<S> b_r = b;
  const Operand<const S> oa = a_rm ? operand(a_r) : operand(a);
  const Operand<const S> ob = b_rm ? operand(b_r) : operand(b);
  Mat<S> c_c = Mat<S>::Constant(m, n, S(7));  // garbage to be overwritten
  RowMat<S> c_r = RowMat<S>::Constant(m, n, S(7));
  if (c_rm) {
    gemm.run(oa, ob, mutable_operand(c_r));
    c_c = c_r;
  } else {
    gemm.run(oa, ob, mutable_operand(c_c));
  }
  const double tol = (std::is_same_v<S, float> ? 1e-5 : 1e-13) * static_cast<double>(k);
  EXPECT_LE((c_c - expected).cwiseAbs().maxCoeff(), tol)
      << m << "x" << n << "x" << k << " orders " << a_rm << b_rm << c_rm;
}

TEST(Gemm, MatchesReferenceForEveryStorageOrder) {
  for (int mask = 0; mask < 8; ++mask) {
    const bool a = mask & 1, b = mask & 2, c = mask & 4;
    check_product<float>(37, 29, 11, a, b, c);      // small: no blocking
    check_product<float>(300, 70, 1500, a, b, c);   // depth blocked (kc < 1500)
    check_product<double>(130, 900, 200, a, b, c);  // columns blocked
    check_product<double>(1, 1, 1, a, b, c);
  }
}

TEST(Gemm, OperandsCanBeBlocksAndTransposes) {
  GemmWorkspace<float> ws;
  Gemm<float> gemm(20, 30, 40, false, ws);
  const Mat<float> big = uniform_matrix<float>(50, 60, -1, 1, seed(), 3);
  // c (20 x 30) = big.block(0,0,40,20)^T * big.block(5,7,40,30)
  Mat<float> c(25, 30);
  auto c_block = c.topRows(20);
  gemm.run(operand(big.block(0, 0, 40, 20)).t(), operand(big.block(5, 7, 40, 30)),
           mutable_operand(c_block));
  const Mat<float> expected = big.block(0, 0, 40, 20).transpose() * big.block(5, 7, 40, 30);
  EXPECT_LE((c.topRows(20) - expected).cwiseAbs().maxCoeff(), 1e-5f);
}

TEST(Gemm, BlockingDoesNotDependOnTheDetectedCaches) {
  GemmWorkspace<float> ws;
  const Gemm<float> first(1024, 128, 1024, false, ws);
  Eigen::setCpuCacheSizes(48 * 1024, 2 * 1024 * 1024, 256 * 1024 * 1024);
  const Gemm<float> second(1024, 128, 1024, false, ws);
  EXPECT_EQ(first.kc(), second.kc());
  EXPECT_EQ(first.mc(), second.mc());
  EXPECT_EQ(first.nc(), second.nc());
}

TEST(Gemm, RunsWithoutHeapAllocation) {
  GemmWorkspace<float> ws;
  Gemm<float> gemm(1024, 128, 1024, false, ws);
  const Mat<float> a = uniform_matrix<float>(1024, 1024, -1, 1, seed(), 4);
  const Mat<float> b = uniform_matrix<float>(1024, 128, -1, 1, seed(), 5);
  Mat<float> c(1024, 128);
  Eigen::internal::set_is_malloc_allowed(false);
  EXPECT_THROW(Mat<float> tmp(4, 4), std::logic_error);  // the guard is live
  EXPECT_NO_THROW(gemm.run(operand(a), operand(b), mutable_operand(c)));
  EXPECT_THROW(Mat<float> tmp = a * b, std::logic_error);  // Eigen's own product allocates here
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_LE((c - a * b).cwiseAbs().maxCoeff(), 1e-3f);
}

}  // namespace
}  // namespace mdn::test
