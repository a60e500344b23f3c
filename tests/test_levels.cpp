// Instruction-set levels in one process: detection, the elementary functions that replace the C
// library's, and the kernels' promise that a sample's result does not depend on where it sits.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "mdn/clip.hpp"
#include "mdn/cpu.hpp"
#include "mdn/detmath.hpp"
#include "mdn/kernels.hpp"
#include "mdn/mixture.hpp"
#include "mdn/network.hpp"
#include "support/levels.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

TEST(Levels, NamesRoundTripAndTheBaselineIsAlwaysThere) {
  for (CpuLevel l : {CpuLevel::x86_64, CpuLevel::x86_64_v3, CpuLevel::x86_64_v4})
    EXPECT_EQ(parse_cpu_level(to_string(l)), l);
  EXPECT_FALSE(parse_cpu_level("x86-64-v2").has_value());
  EXPECT_FALSE(parse_cpu_level("native").has_value());
  EXPECT_TRUE(is_built(CpuLevel::x86_64));
  EXPECT_TRUE(cpu_supports(CpuLevel::x86_64));
  EXPECT_EQ(built_levels().front(), CpuLevel::x86_64);
}

TEST(Levels, DetectionIsNestedAndAgreesWithTheCompiler) {
  // Each level's instructions include the lower level's: support is monotone.
  if (cpu_supports(CpuLevel::x86_64_v4)) {
    EXPECT_TRUE(cpu_supports(CpuLevel::x86_64_v3));
  }
  EXPECT_TRUE(cpu_supports(cpu_best_level()));
  EXPECT_TRUE(cpu_supports(best_built_level()));
  EXPECT_LE(best_built_level(), cpu_best_level());
  // An independent detection: GCC's own (libgcc's CPU model, which also checks the OS state).
  __builtin_cpu_init();
  const bool gcc_v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                      __builtin_cpu_supports("avx") && __builtin_cpu_supports("sse4.2") &&
                      __builtin_cpu_supports("popcnt");
  const bool gcc_v4 = gcc_v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  EXPECT_EQ(cpu_supports(CpuLevel::x86_64_v3), gcc_v3) << cpu_model_name();
  EXPECT_EQ(cpu_supports(CpuLevel::x86_64_v4), gcc_v4) << cpu_model_name();
  EXPECT_FALSE(cpu_model_name().empty());
}

// ---- det:: against the C library in long double (an independent, more precise computation) ----

double ulps(double got, long double want) {
  const double w = static_cast<double>(want);
  if (got == w) return 0;
  const double ulp = std::nextafter(std::abs(w), std::numeric_limits<double>::infinity()) - std::abs(w);
  return static_cast<double>(std::abs(static_cast<long double>(got) - want) / ulp);
}

TEST(DetMath, ExpLogCosPowAreAccurate) {
  rng::Sequence r(seed(), rng::kTestData + 7);
  double worst_exp = 0, worst_log = 0, worst_cos = 0;
  for (int i = 0; i < 20000; ++i) {
    const double x = -700 + 1400 * r.uniform();
    worst_exp = std::max(worst_exp, ulps(det::exp(x), std::exp(static_cast<long double>(x))));
    const double y = std::ldexp(0.5 + r.uniform(), static_cast<int>(r.below(200)) - 100);
    worst_log = std::max(worst_log, ulps(det::log(y), std::log(static_cast<long double>(y))));
    const double z = 2 * M_PI * r.uniform();  // Box-Muller's range; the cosine schedule's is [0, pi]
    // Near a zero of cos an ulp of the result is tiny: measure against the argument's scale.
    const long double want = std::cos(static_cast<long double>(z));
    const double err = static_cast<double>(std::abs(static_cast<long double>(det::cos(z)) - want));
    worst_cos = std::max(worst_cos, err / std::numeric_limits<double>::epsilon());
  }
  std::printf("worst errors: exp %.2f ulp, log %.2f ulp, cos %.2f eps\n", worst_exp, worst_log, worst_cos);
  EXPECT_LE(worst_exp, 2.0);
  EXPECT_LE(worst_log, 2.0);
  EXPECT_LE(worst_cos, 2.0);
  EXPECT_EQ(det::exp(0.0), 1.0);
  EXPECT_EQ(det::log(1.0), 0.0);
  EXPECT_EQ(det::cos(0.0), 1.0);
  EXPECT_EQ(det::log(0.0), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(det::log(-1.0)));
  EXPECT_EQ(det::pow(0.5, 0), 1.0);
  EXPECT_EQ(det::pow(0.5, 10), std::ldexp(1.0, -10));
  // Repeated squaring: each squaring doubles the relative error, so up to about t ulps.
  for (std::int64_t t : {1, 7, 100, 12345, 100000})
    EXPECT_LE(ulps(det::pow(0.999, t), std::pow(static_cast<long double>(0.999), static_cast<long double>(t))),
              2.0 * static_cast<double>(t))
        << t;
}

// ---- the kernels: a sample's result does not depend on its position ------------------------------

class Position : public testing::TestWithParam<CpuLevel> {};

TEST_P(Position, ASamplesNllIsTheSameWhereverItSitsInTheBatch) {
  // Vectorised and scalar code round transcendental functions differently: if the last samples
  // of a batch took another path (a scalar tail, or the C library), their NLL and gradient would
  // depend on n and on their index. Every sample is computed alone and at every position of
  // batches of every length up to 37, and must agree to the bit. (The matrix products are
  // another matter: their blocking depends on the shapes; a micro-batch's composition is the same
  // for any number of ranks, which is what exactness needs.)
  const CpuLevel level = GetParam();
  const int K = 4, L = 2, O = K * (1 + 2 * L);
  const Index N = 37;
  for (SigmaMode mode : {SigmaMode::softplus, SigmaMode::exp}) {
    MixtureHead<float> head(level, K, L, mode, 1e-3, N);
    const Mat<float> h = uniform_matrix<float>(N, O, -3, 3, seed(), 1);
    const Mat<float> y = uniform_matrix<float>(L, N, -2, 2, seed(), 2);
    std::vector<double> alone(N);
    Mat<float> g_alone(N, O), d(N, O);
    for (Index j = 0; j < N; ++j) {
      Mat<float> d1(1, O);
      head.nll_and_grad(h.row(j), y.col(j), d1, &alone[static_cast<std::size_t>(j)]);
      g_alone.row(j) = d1;
    }
    std::vector<double> per(N);
    for (Index n = 1; n <= N; ++n) {
      for (Index first = 0; first + n <= N; first += std::max<Index>(1, n / 2)) {
        auto dn = d.topRows(n);
        head.nll_and_grad(h.middleRows(first, n), y.middleCols(first, n), dn, per.data());
        for (Index j = 0; j < n; ++j) {
          ASSERT_EQ(per[static_cast<std::size_t>(j)], alone[static_cast<std::size_t>(first + j)])
              << "sample " << first + j << " at position " << j << " of " << n << ", " << to_string(mode);
          ASSERT_EQ(dn.row(j), g_alone.row(first + j)) << "gradient of sample " << first + j << " at " << j;
        }
      }
    }
  }
}

TEST_P(Position, AMixturesParametersAreTheSameWhereverItSits) {
  const CpuLevel level = GetParam();
  const int K = 3, L = 2;
  const Index N = 29;
  MixtureHead<double> head(level, K, L, SigmaMode::softplus, 1e-3, N);
  const Mat<double> h = uniform_matrix<double>(N, K * (1 + 2 * L), -30, 30, seed(), 3);
  Eigen::MatrixXd pi(N, K), mu(N, K * L), sigma(N, K * L);
  head.parameters(h, pi, mu, sigma);
  for (Index j = 0; j < N; ++j) {
    Eigen::MatrixXd p1(1, K), m1(1, K * L), s1(1, K * L);
    head.parameters(h.row(j), p1, m1, s1);
    ASSERT_EQ(p1, pi.row(j)) << j;
    ASSERT_EQ(s1, sigma.row(j)) << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, Position, testing::ValuesIn(runnable_levels()), level_param_name);

TEST(Levels, KernelsFlushDenormalsWhateverTheCallersMode) {
  // A result below the smallest normal float becomes zero inside the kernels (FTZ), a denormal
  // input counts as zero (DAZ), and the caller's floating-point mode is left as it was.
  const float tiny = std::numeric_limits<float>::min();  // 2^-126
  volatile float denormal = tiny / 4;
  ASSERT_GT(denormal, 0.0f) << "this process flushes denormals already";
  for (CpuLevel level : runnable_levels()) {
    const Kernels<float>& k = kernels<float>(level);
    float x[2] = {tiny, 1.0f};
    k.scale(x, 2, 0.25f);
    EXPECT_EQ(x[0], 0.0f) << to_string(level);
    EXPECT_EQ(x[1], 0.25f);
    float d[1] = {denormal};
    EXPECT_EQ(k.max_abs(d, 1), 0.0) << to_string(level);
    volatile float after = tiny;
    after = after / 4;
    EXPECT_GT(after, 0.0f) << "the caller's mode changed";
  }
}

TEST(Levels, TheOnePassRoundTripIsQuantiseThenDequantise) {
  // The one-rank reduction's pass gives the bits of the two passes that the integer sum over ranks
  // goes through (values and sum of squares), at every level, over several chunks and a ragged end.
  const Index n = 3 * kDequantizeChunk + 1001, offset = 37;
  std::vector<Vec<float>> grads;
  for (int c = 0; c < 3; ++c) {
    const Mat<float> g = uniform_matrix<float>(1, n + offset, -1, 1, seed(), 20 + static_cast<std::uint64_t>(c));
    grads.emplace_back(g.row(0).transpose());
  }
  const float* ptrs[3] = {grads[0].data(), grads[1].data(), grads[2].data()};
  const double scale = std::ldexp(1.0, 58), factor = std::ldexp(1.0, -58) / 300.0;
  for (CpuLevel level : runnable_levels()) {
    const Kernels<float>& k = kernels<float>(level);
    for (int count : {1, 3}) {
      std::vector<std::int64_t> acc(static_cast<std::size_t>(n));
      Vec<float> two(n), one(n);
      k.quantize(ptrs, count, offset, acc.data(), n, scale);
      const double ss_two = k.dequantize(acc.data(), two.data(), n, factor);
      const double ss_one = k.round_trip(ptrs, count, offset, one.data(), n, scale, factor);
      EXPECT_EQ(one, two) << to_string(level) << ", " << count << " buffers";
      EXPECT_EQ(ss_one, ss_two) << to_string(level) << ", " << count << " buffers";
      EXPECT_GT(ss_one, 0.0);
    }
  }
}

TEST(Levels, QuantisationIsLlrintAndDequantisationIsTheConversionAtEveryLevel) {
  // The integers of the exact reduction are the same function at every level: quantize is
  // llrint(x scale) summed over the buffers (ties to even), dequantize (double)(int64) times the
  // factor, narrowed to float. Computed here one value at a time in scalar code, over magnitudes
  // from fractions (ties included) to 2^62 of the quantum, both signs, and the 2^52 boundary where
  // a vector conversion changes method.
  std::vector<float> x;
  for (float f : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.25f, -0.75f, 0.0f, -0.0f, 1.0f, 3.0f, 1e-30f})
    x.push_back(f);
  const Mat<float> u = uniform_matrix<float>(1, 4000, -1, 1, seed(), 31);
  for (Index i = 0; i < u.cols(); ++i) x.push_back(u(0, i));
  // Values whose scaled magnitude sits just below, at and above 2^52 (scale 2^40: 2^12 = 4096).
  for (float f : {4095.999f, 4096.0f, 4096.001f, -4095.999f, -4096.0f, 8191.999f, 8192.0f, -8191.999f})
    x.push_back(f);
  for (int e : {0, 1, 7, 23, 24, 30, 40, 51, 52, 53, 60, 61}) {
    const double scale = std::ldexp(1.0, e);
    // The quantum keeps every sum below 2^62 (reducer.cpp): the values that do here.
    std::vector<float> xs;
    for (float f : x)
      if (std::abs(static_cast<double>(f)) * scale < std::ldexp(1.0, 61)) xs.push_back(f);
    std::vector<float> ys(xs.rbegin(), xs.rend());  // a second buffer: the sum over buffers
    const Index n = static_cast<Index>(xs.size());
    ASSERT_GT(n, 4000);
    const float* one[1] = {xs.data()};
    const float* two[2] = {xs.data(), ys.data()};
    for (CpuLevel level : runnable_levels()) {
      const Kernels<float>& k = kernels<float>(level);
      for (int count : {1, 2}) {
        std::vector<std::int64_t> got(xs.size());
        k.quantize(count == 1 ? one : two, count, 0, got.data(), n, scale);
        for (std::size_t i = 0; i < xs.size(); ++i) {
          std::int64_t want = std::llrint(static_cast<double>(xs[i]) * scale);
          if (count == 2) want += std::llrint(static_cast<double>(ys[i]) * scale);
          ASSERT_EQ(got[i], want) << to_string(level) << ", scale 2^" << e << ", x " << xs[i] << ", " << count;
        }
      }
    }
  }
  // Dequantisation: integers of every bit length up to 63, both signs, with the bits below the
  // double's 53 set at random (so most need rounding), and ties (a lone bit just below the 53).
  std::vector<std::int64_t> ints;
  std::uint64_t state = 0x9e3779b97f4a7c15ull ^ seed();
  const auto next = [&state] {  // splitmix64
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (int bits = 0; bits <= 63; ++bits)
    for (int r = 0; r < 40; ++r) {
      const std::uint64_t mask = bits == 0 ? 0ull : ~0ull >> (64 - bits);
      std::int64_t v = static_cast<std::int64_t>(next() & mask);
      if (r % 2 == 1) v = -v;
      ints.push_back(v);
    }
  for (int b = 54; b <= 62; ++b) {
    const std::int64_t top = std::int64_t{1} << b;
    for (std::int64_t tie : {top + (top >> 53), top + 3 * (top >> 53), top + (top >> 53) + 1, top - 1}) {
      ints.push_back(tie);
      ints.push_back(-tie);
    }
  }
  ints.push_back(std::numeric_limits<std::int64_t>::min() + 1);
  ints.push_back(std::numeric_limits<std::int64_t>::max());
  const Index m = static_cast<Index>(ints.size());
  for (double factor : {1.0, std::ldexp(1.0, -40) / 3.0}) {
    std::vector<float> want(ints.size());
    for (std::size_t i = 0; i < ints.size(); ++i)
      want[i] = static_cast<float>(static_cast<double>(ints[i]) * factor);
    for (CpuLevel level : runnable_levels()) {
      std::vector<float> got(ints.size());
      kernels<float>(level).dequantize(ints.data(), got.data(), m, factor);
      for (std::size_t i = 0; i < ints.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << to_string(level) << ", integer " << ints[i] << ", factor " << factor;
    }
  }
}

TEST(Levels, AGradientsBitsDoNotDependOnWhereItsBufferSits) {
  // The reducer hands the network buffers at any float offset (a rank's second micro-batch in
  // the node's shared memory follows its first); every level must write the same bits there.
  ModelSpec spec;
  spec.input_dim = 3;
  spec.output_dim = 2;
  spec.components = 3;
  spec.hidden = {37, 29};  // odd widths: the bias slots start at every alignment
  const Index n = 53;
  const Layout layout(spec);
  Vec<float> params(layout.size());
  initialize(params.data(), layout, seed());
  const Mat<float> x = uniform_matrix<float>(3, n, -2, 2, seed(), 4);
  const Mat<float> y = uniform_matrix<float>(2, n, -2, 2, seed(), 5);
  for (CpuLevel level : runnable_levels()) {
    Network<float> net(level, spec, n);
    Vec<float> aligned(layout.size());
    const double f = net.loss_and_grad(params.data(), x, y, aligned.data());
    for (Index shift = 1; shift < 16; ++shift) {
      Vec<float> buffer(layout.size() + shift);
      EXPECT_EQ(net.loss_and_grad(params.data(), x, y, buffer.data() + shift), f);
      EXPECT_EQ(Vec<float>(buffer.tail(layout.size())), aligned) << to_string(level) << ", " << shift << " floats in";
    }
  }
}

TEST(Levels, EveryLevelComputesTheSameFunction) {
  // Levels round differently (FMA, vector widths), but compute the same loss and gradient: in
  // double, to 1e-12 of their size.
  ModelSpec spec;
  spec.input_dim = 2;
  spec.output_dim = 2;
  spec.components = 3;
  spec.hidden = {24, 17};
  const Index n = 41;
  const Layout layout(spec);
  Vec<double> params(layout.size());
  initialize(params.data(), layout, seed());
  const Mat<double> x = uniform_matrix<double>(2, n, -2, 2, seed(), 4);
  const Mat<double> y = uniform_matrix<double>(2, n, -2, 2, seed(), 5);
  Network<double> base(CpuLevel::x86_64, spec, n);
  Vec<double> g0(layout.size());
  const double f0 = base.loss_and_grad(params.data(), x, y, g0.data());
  for (CpuLevel level : runnable_levels()) {
    Network<double> net(level, spec, n);
    Vec<double> g(layout.size());
    const double f = net.loss_and_grad(params.data(), x, y, g.data());
    EXPECT_NEAR(f, f0, 1e-12 * std::abs(f0)) << to_string(level);
    EXPECT_LE((g - g0).cwiseAbs().maxCoeff(), 1e-12 * g0.cwiseAbs().maxCoeff()) << to_string(level);
  }
}

TEST(Levels, FloatNetworksAgreeWithDoubleOnes) {
  // Float products large enough for mdn's own kernel (bias and activation in its last pass),
  // against the double network (Eigen's products, the separate pass): the same loss and
  // gradient to float precision, at every level. The narrow networks take the kernel's other
  // paths: layers of fewer than 32 outputs run transposed (bias and activation included), a
  // depth of 8 (the inputs) runs the register tile, and the first layer's weight gradient (8
  // rows) runs transposed with its one panel's operand read in place.
  for (const auto& [D, hidden] : {std::pair<int, std::vector<int>>{20, {64, 48}},
                                  std::pair<int, std::vector<int>>{8, {24, 16}},
                                  std::pair<int, std::vector<int>>{8, {64}}})
  for (Activation act : {Activation::tanh, Activation::relu}) {
    ModelSpec spec;
    spec.input_dim = D;
    spec.output_dim = 2;
    spec.components = 4;
    spec.hidden = hidden;
    spec.activation = act;
    const Index n = 100;
    const Layout layout(spec);
    Vec<double> pd(layout.size());
    initialize(pd.data(), layout, seed());
    const Vec<float> pf = pd.cast<float>();
    const Mat<float> x = uniform_matrix<float>(D, n, -2, 2, seed(), 8);
    const Mat<float> y = uniform_matrix<float>(2, n, -2, 2, seed(), 9);
    for (CpuLevel level : runnable_levels()) {
      Network<double> nd(level, spec, n);
      Network<float> nf(level, spec, n);
      Vec<double> gd(layout.size());
      Vec<float> gf(layout.size());
      const double fd = nd.loss_and_grad(pd.data(), x.cast<double>(), y.cast<double>(), gd.data());
      const double ff = nf.loss_and_grad(pf.data(), x, y, gf.data());
      EXPECT_NEAR(ff, fd, 1e-4 * std::abs(fd)) << to_string(level) << " " << to_string(act) << " D=" << D;
      EXPECT_LE((gf.cast<double>() - gd).cwiseAbs().maxCoeff(), 1e-4 * gd.cwiseAbs().maxCoeff())
          << to_string(level) << " " << to_string(act) << " D=" << D << " hidden " << hidden.size();
    }
  }
}

}  // namespace
}  // namespace mdn::test
