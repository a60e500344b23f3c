// Full covariance (README, "Full covariance"): the factor of the precision (what mdn uses)
// against the factor of the covariance, per sample and component, for the density and its
// gradient. Both forms are written here the same way (scalar, double, the same scale
// function, each sample's forward terms kept for its gradient), for the same distributions:
// the covariance form gets T = U^-1, so that T T^T = (U^T U)^-1, and both must give the same NLL.
//
//   precision  v = U r                    (each v_i an independent dot product)
//              dmu = -gamma U^T v, dU_ij = gamma v_i r_j
//   covariance solve T w = r              (back substitution: each w_i waits for the next)
//              t = T^-T w (a second solve), dmu = -gamma t, dT_ij = gamma (delta_ij / T_ii - t_i w_j)
//
//   bench_forms [rounds]     prints ns per sample for L = 2, 3, 4, 6, 8 (K = 5) and the ratio
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mdn/detmath.hpp"
#include "mdn/random.hpp"

namespace {

constexpr double kLog2Pi = 1.8378770664093454836;
constexpr double kFloor = 1e-3;

/// s = softplus(raw) + floor and (ds/draw) = logistic(raw).
inline void scale(double raw, double& s, double& ds) {
  const double e = mdn::det::exp(-std::abs(raw));
  s = std::max(raw, 0.0) + std::log1p(e) + kFloor;
  ds = raw >= 0 ? 1 / (1 + e) : e / (1 + e);
}

inline double lse(const double* t, int n) {
  double m = t[0];
  for (int i = 1; i < n; ++i) m = std::max(m, t[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += mdn::det::exp(t[i] - m);
  return m + mdn::det::log(sum);
}

struct Problem {
  int K, L, O, F;
  std::vector<double> head;  // n x O: logits, mu, raw diagonal, off-diagonals (mdn's layout)
  std::vector<double> tri;   // n x K x F: the covariance form's off-diagonals of T = U^-1
  std::vector<double> y;     // n x L
};

/// mdn's layout, with the covariance form's T = U^-1 beside it.
Problem make(int K, int L, int n) {
  Problem p{K, L, 0, L * (L - 1) / 2, {}, {}, {}};
  p.O = K * (1 + 2 * L + p.F);
  mdn::rng::Sequence r(5, mdn::rng::kTestData);
  p.head.resize(static_cast<std::size_t>(n * p.O));
  for (auto& v : p.head) v = 0.5 * r.normal();
  p.y.resize(static_cast<std::size_t>(n * L));
  for (auto& v : p.y) v = r.normal();
  p.tri.resize(static_cast<std::size_t>(n * K * p.F));
  std::vector<double> U(static_cast<std::size_t>(L * L)), T(U.size());
  for (int j = 0; j < n; ++j)
    for (int k = 0; k < K; ++k) {
      const double* h = p.head.data() + j * p.O;
      std::fill(U.begin(), U.end(), 0.0);
      for (int i = 0, o = 0; i < L; ++i) {
        double s, ds;
        scale(h[K + K * L + k * L + i], s, ds);
        U[static_cast<std::size_t>(i * L + i)] = 1 / s;
        for (int q = i + 1; q < L; ++q, ++o) U[static_cast<std::size_t>(i * L + q)] = h[K + 2 * K * L + k * p.F + o];
      }
      std::fill(T.begin(), T.end(), 0.0);  // T = U^-1, column by column
      for (int c = 0; c < L; ++c) {
        T[static_cast<std::size_t>(c * L + c)] = 1 / U[static_cast<std::size_t>(c * L + c)];
        for (int i = c - 1; i >= 0; --i) {
          double acc = 0;
          for (int q = i + 1; q <= c; ++q) acc += U[static_cast<std::size_t>(i * L + q)] * T[static_cast<std::size_t>(q * L + c)];
          T[static_cast<std::size_t>(i * L + c)] = -acc / U[static_cast<std::size_t>(i * L + i)];
        }
      }
      for (int i = 0, o = 0; i < L; ++i)
        for (int q = i + 1; q < L; ++q, ++o)
          p.tri[static_cast<std::size_t>((j * K + k) * p.F + o)] = T[static_cast<std::size_t>(i * L + q)];
    }
  return p;
}

/// Summed NLL and gradient (into g, n x O) of every sample; precision (true) or covariance form.
template <bool kPrecision>
double run(const Problem& p, int n, std::vector<double>& g) {
  const int K = p.K, L = p.L, F = p.F;
  std::vector<double> t(static_cast<std::size_t>(K)), r(static_cast<std::size_t>(K * L)), s(r.size()), ds(r.size()),
      w(r.size()), u(static_cast<std::size_t>(L));
  double total = 0;
  for (int j = 0; j < n; ++j) {
    const double* h = p.head.data() + j * p.O;
    const double* y = p.y.data() + j * L;
    double* d = g.data() + j * p.O;
    const double lse_a = lse(h, K);
    for (int k = 0; k < K; ++k) {
      const double* off = kPrecision ? h + K + 2 * K * L + k * F : p.tri.data() + (j * K + k) * F;
      double* rk = r.data() + k * L;
      double* sk = s.data() + k * L;
      double* wk = w.data() + k * L;
      double logdet = 0, q = 0;
      for (int i = 0; i < L; ++i) {
        rk[i] = y[i] - h[K + k * L + i];
        scale(h[K + K * L + k * L + i], sk[i], ds[static_cast<std::size_t>(k * L + i)]);
        logdet += mdn::det::log(sk[i]);
      }
      if (kPrecision) {  // v = U r: U_ii = 1 / s_i
        for (int i = 0, o = 0; i < L; ++i) {
          double v = rk[i] / sk[i];
          for (int c = i + 1; c < L; ++c, ++o) v += off[o] * rk[c];
          wk[i] = v;
          q += v * v;
        }
      } else {  // T w = r, T_ii = s_i: from the last row up
        for (int i = L - 1; i >= 0; --i) {
          double acc = rk[i];
          const int o0 = i * (2 * L - i - 1) / 2;
          for (int c = i + 1; c < L; ++c) acc -= off[o0 + c - i - 1] * wk[c];
          wk[i] = acc / sk[i];
          q += wk[i] * wk[i];
        }
      }
      t[static_cast<std::size_t>(k)] = h[k] - lse_a - 0.5 * L * kLog2Pi - logdet - 0.5 * q;
    }
    const double l = lse(t.data(), K);
    total -= l;
    for (int k = 0; k < K; ++k) {
      const double gamma = mdn::det::exp(t[static_cast<std::size_t>(k)] - l);
      d[k] = mdn::det::exp(h[k] - lse_a) - gamma;
      const double* off = kPrecision ? h + K + 2 * K * L + k * F : p.tri.data() + (j * K + k) * F;
      const double* rk = r.data() + k * L;
      const double* sk = s.data() + k * L;
      const double* wk = w.data() + k * L;
      double* dmu = d + K + k * L;
      double* draw = d + K + K * L + k * L;
      double* doff = d + K + 2 * K * L + k * F;
      if (kPrecision) {
        for (int c = 0; c < L; ++c) u[static_cast<std::size_t>(c)] = wk[c] / sk[c];
        for (int i = 0, o = 0; i < L; ++i)
          for (int c = i + 1; c < L; ++c, ++o) {
            u[static_cast<std::size_t>(c)] += off[o] * wk[i];
            doff[o] = gamma * wk[i] * rk[c];
          }
        for (int i = 0; i < L; ++i) {
          dmu[i] = -gamma * u[static_cast<std::size_t>(i)];
          draw[i] = gamma * (1 - wk[i] * rk[i] / sk[i]) * ds[static_cast<std::size_t>(k * L + i)] / sk[i];
        }
      } else {  // t = T^-T w: T^T is lower triangular, from the first row down
        for (int i = 0; i < L; ++i) {
          double acc = wk[i];
          for (int c = 0; c < i; ++c) acc -= off[c * (2 * L - c - 1) / 2 + i - c - 1] * u[static_cast<std::size_t>(c)];
          u[static_cast<std::size_t>(i)] = acc / sk[i];
        }
        for (int i = 0, o = 0; i < L; ++i) {
          dmu[i] = -gamma * u[static_cast<std::size_t>(i)];
          draw[i] = gamma * (1 / sk[i] - u[static_cast<std::size_t>(i)] * wk[i]) * ds[static_cast<std::size_t>(k * L + i)];
          for (int c = i + 1; c < L; ++c, ++o) doff[o] = -gamma * u[static_cast<std::size_t>(i)] * wk[c];
        }
      }
    }
  }
  return total;
}

template <bool kPrecision>
double ns_per_sample(const Problem& p, int n, std::vector<double>& g, double& nll) {
  const auto t0 = std::chrono::steady_clock::now();
  nll = run<kPrecision>(p, n, g);
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const int n = 20000, K = 5;
  std::printf("full covariance, K = %d, density and gradient per sample (scalar, double; median of %d alternating rounds)\n",
              K, rounds);
  std::printf("%3s %16s %17s %9s %14s\n", "L", "precision ns", "covariance ns", "cov/prec", "|NLL diff|");
  for (int L : {2, 3, 4, 6, 8}) {
    const Problem p = make(K, L, n);
    std::vector<double> g(static_cast<std::size_t>(n * p.O));
    std::vector<double> prec, cov;
    double a = 0, b = 0;
    for (int r = 0; r < rounds; ++r) {
      if (r % 2 == 0) {
        prec.push_back(ns_per_sample<true>(p, n, g, a));
        cov.push_back(ns_per_sample<false>(p, n, g, b));
      } else {
        cov.push_back(ns_per_sample<false>(p, n, g, b));
        prec.push_back(ns_per_sample<true>(p, n, g, a));
      }
    }
    std::sort(prec.begin(), prec.end());
    std::sort(cov.begin(), cov.end());
    const double mp = prec[prec.size() / 2], mc = cov[cov.size() / 2];
    std::printf("%3d %16.0f %17.0f %8.2fx %14.2e\n", L, mp, mc, mc / mp, std::abs(a - b) / n);
  }
  return 0;
}
