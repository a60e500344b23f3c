// The allocation-free GEMM against Eigen's own product, for every storage order, for shapes
// that block along every dimension, and for results smaller than the site's maxima.
#include <gtest/gtest.h>

#include <array>

#include "mdn/gemm.hpp"
#include "mdn/model.hpp"
#include "support/levels.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

class GemmAtLevel : public testing::TestWithParam<CpuLevel> {};

template <class S>
void check_product(CpuLevel level, Index m, Index n, Index k, bool a_rm, bool b_rm, bool c_rm) {
  Gemm<S> gemm(level, m + 3, n + 5, k + 7, c_rm);  // maxima above the shapes used
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

TEST_P(GemmAtLevel, MatchesReferenceForEveryStorageOrder) {
  for (int mask = 0; mask < 8; ++mask) {
    const bool a = mask & 1, b = mask & 2, c = mask & 4;
    check_product<float>(GetParam(), 37, 29, 11, a, b, c);      // small: no blocking
    check_product<float>(GetParam(), 300, 70, 1500, a, b, c);   // depth blocked (kc < 1500)
    check_product<double>(GetParam(), 130, 900, 200, a, b, c);  // columns blocked
    check_product<double>(GetParam(), 1, 1, 1, a, b, c);
    check_product<float>(GetParam(), 8, 300, 900, a, b, c);   // few rows: runs transposed
    check_product<float>(GetParam(), 300, 9, 900, a, b, c);   // one panel: A in place (column-major)
    check_product<float>(GetParam(), 299, 27, 500, a, b, c);  // two panels, partial last rows
    check_product<float>(GetParam(), 250, 90, 8, a, b, c);    // a depth of 8
  }
}

TEST_P(GemmAtLevel, OperandsCanBeBlocksAndTransposes) {
  Gemm<float> gemm(GetParam(), 20, 30, 40, false);
  const Mat<float> big = uniform_matrix<float>(50, 60, -1, 1, seed(), 3);
  // c (20 x 30) = big.block(0,0,40,20)^T * big.block(5,7,40,30)
  Mat<float> c(25, 30);
  auto c_block = c.topRows(20);
  gemm.run(operand(big.block(0, 0, 40, 20)).t(), operand(big.block(5, 7, 40, 30)),
           mutable_operand(c_block));
  const Mat<float> expected = big.block(0, 0, 40, 20).transpose() * big.block(5, 7, 40, 30);
  EXPECT_LE((c.topRows(20) - expected).cwiseAbs().maxCoeff(), 1e-5f);
}

TEST_P(GemmAtLevel, AnElementDependsOnItsRowAndColumnOnlyNotOnTheShape) {
  // Float products large enough for mdn's own kernel compute every element as one chain of
  // multiply-adds over the depth: an element of a product of any shape (edge tiles, depth
  // blocks, sub-matrices) equals the same element of any other product of that row and column.
  const Mat<float> a = uniform_matrix<float>(301, 800, -1, 1, seed(), 6);
  const Mat<float> b = uniform_matrix<float>(800, 97, -1, 1, seed(), 7);
  Gemm<float> big(GetParam(), 301, 97, 800, false);
  Mat<float> c(301, 97);
  big.run(operand(a), operand(b), mutable_operand(c));
  // (Sub-products with at least 7 rows and 32 columns, or 32 rows and 14 columns: narrower ones
  // run Eigen's kernel; fewer than 32 rows run transposed, one or two panels of columns read a
  // column-major A in place; 16 columns take narrower panels than 97 at every level, 20 and 25
  // at x86-64-v3 and -v4.)
  for (const auto& [r0, rows, c0, cols] : {std::array<Index, 4>{0, 48, 0, 16}, std::array<Index, 4>{13, 64, 5, 17},
                                           std::array<Index, 4>{250, 51, 80, 17}, std::array<Index, 4>{0, 301, 40, 57},
                                           std::array<Index, 4>{13, 8, 5, 57}, std::array<Index, 4>{7, 20, 0, 97},
                                           std::array<Index, 4>{0, 301, 3, 20}, std::array<Index, 4>{40, 200, 50, 25}}) {
    Gemm<float> part(GetParam(), rows, cols, 800, false);
    Mat<float> p(rows, cols);
    part.run(operand(a.middleRows(r0, rows)), operand(b.middleCols(c0, cols)), mutable_operand(p));
    EXPECT_EQ(p, c.block(r0, c0, rows, cols)) << rows << "x" << cols << " at " << r0 << ", " << c0;
  }
  // Row-major operands give the same bits as column-major ones.
  const RowMat<float> ar = a;
  const RowMat<float> br = b;
  Mat<float> c2(301, 97);
  big.run(operand(ar), operand(br), mutable_operand(c2));
  EXPECT_EQ(c2, c);
}

TEST_P(GemmAtLevel, ShapesBeyondTheSiteOrThatDoNotAgreeAreCaughtInEveryBuild) {
  // MDN_CHECK, not assert: the check holds in release builds, where the tests run.
  Gemm<float> gemm(GetParam(), 40, 30, 20, false);
  const Mat<float> a = Mat<float>::Ones(50, 20), b = Mat<float>::Ones(20, 30);
  Mat<float> c(50, 30);
  EXPECT_THROW(gemm.run(operand(a), operand(b), mutable_operand(c)), std::logic_error);  // 50 rows > 40
  Mat<float> c2(40, 30);
  EXPECT_THROW(gemm.run(operand(a.topRows(40)), operand(b.topRows(10)), mutable_operand(c2)), std::logic_error);
  EXPECT_NO_THROW(gemm.run(operand(a.topRows(40)), operand(b), mutable_operand(c2)));
}

TEST_P(GemmAtLevel, BlockingDoesNotDependOnTheDetectedCaches) {
  const Gemm<float> first(GetParam(), 1024, 128, 1024, false);
  Eigen::setCpuCacheSizes(48 * 1024, 2 * 1024 * 1024, 256 * 1024 * 1024);
  const Gemm<float> second(GetParam(), 1024, 128, 1024, false);
  EXPECT_EQ(first.kc(), second.kc());
  EXPECT_EQ(first.mc(), second.mc());
  EXPECT_EQ(first.nc(), second.nc());
}

TEST_P(GemmAtLevel, RunsWithoutHeapAllocation) {
  Gemm<float> gemm(GetParam(), 1024, 128, 1024, false);
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

INSTANTIATE_TEST_SUITE_P(Levels, GemmAtLevel, testing::ValuesIn(runnable_levels()), level_param_name);

}  // namespace
}  // namespace mdn::test
