// The mixture head of one level: the math is in include/mdn/mixture.hpp.
//
// The head's outputs are first loaded, in double, into workspaces whose row count is padded to a
// multiple of every packet size (rows past n hold zeros); every pass then runs over whole
// packets of samples, with this level's packet functions: each sample's result is the same
// wherever it sits in the micro-batch, and no C library function is called.
#include "level.hpp"


namespace mdn::MDN_LEVEL {

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(2 pi) / 2

using P = Packet<double>;
constexpr Index W = kPacket<double>;

inline P at(const Eigen::ArrayXXd& a, Index col, Index row) { return ei::pload<P>(a.data() + col * a.rows() + row); }
inline void st(Eigen::ArrayXXd& a, Index col, Index row, const P& v) { ei::pstore(a.data() + col * a.rows() + row, v); }
inline P c(double v) { return ei::pset1<P>(v); }

double scalar_log(double x) { return ei::pfirst(ei::plog(c(x))); }

/// Log-sum-exp over the K columns [first, first + K) of a, rows [row, row + W): every term is
/// exponentiated after subtracting the maximum, so no exp overflows.
P logsumexp(const Eigen::ArrayXXd& a, Index first, int K, Index row) {
  P m = at(a, first, row);
  for (int k = 1; k < K; ++k) m = ei::pmax(m, at(a, first + k, row));
  P s = ei::pzero(m);
  for (int k = 0; k < K; ++k) s = ei::padd(s, ei::pexp(ei::psub(at(a, first + k, row), m)));
  return ei::padd(m, ei::plog(s));
}

}  // namespace

template <class S>
MixtureHead<S>::MixtureHead(int components, int output_dim, SigmaMode mode, double sigma_min, Covariance covariance,
                            Index max_n)
    : K_(components),
      L_(output_dim),
      F_(off_diagonals(output_dim, covariance)),
      O_(head_outputs(components, output_dim, covariance)),
      mode_(mode),
      sigma_min_(sigma_min),
      log_sigma_min_(scalar_log(sigma_min)),
      max_n_(max_n),
      pad_n_(padded(max_n)),
      h_(Eigen::ArrayXXd::Zero(pad_n_, O_)),
      y_(Eigen::ArrayXXd::Zero(pad_n_, output_dim)),
      log_pi_(pad_n_, components),
      comp_(pad_n_, components),
      z_(pad_n_, components * output_dim),
      inv_(pad_n_, components * output_dim),
      dscale_(pad_n_, components * output_dim),
      logsig_(pad_n_, components * output_dim),
      r_(covariance == Covariance::full ? pad_n_ : 0, components * output_dim),
      lse_(pad_n_),
      d_(pad_n_, O_) {}

template <class S>
typename MixtureHead<S>::Scale MixtureHead<S>::scale(const Packet<double>& raw) const {
  const bool softplus = mode_ == SigmaMode::softplus;
  const P u = softplus ? raw : ei::psub(raw, c(log_sigma_min_));
  const P e = ei::pexp(ei::pnegate(ei::pabs(u)));           // in (0, 1]
  const P one_e = ei::padd(c(1), e);
  const P logistic = ei::pselect(ei::pcmp_le(ei::pzero(u), u), ei::pdiv(c(1), one_e), ei::pdiv(e, one_e));
  const P sp = ei::padd(ei::pmax(u, ei::pzero(u)), plog1p_nonneg(e));  // softplus(u)
  Scale s;
  if (softplus) {  // sigma = softplus(raw) + sigma_min; dsigma/draw = logistic(raw)
    const P sigma = ei::padd(sp, c(sigma_min_));
    s.inv = ei::pdiv(c(1), sigma);
    s.dscale = ei::pmul(logistic, s.inv);
    s.logsig = ei::plog(sigma);
  } else {  // log sigma = logaddexp(raw, log sigma_min); (dsigma/draw) / sigma = logistic(u)
    s.logsig = ei::padd(sp, c(log_sigma_min_));
    s.inv = ei::pexp(ei::pnegate(s.logsig));
    s.dscale = logistic;
  }
  return s;
}

template <class S>
void MixtureHead<S>::load(const S* head, Index ld_head, Index n) {
  MDN_CHECK(n <= max_n_);
  const Index np = padded(n);
  for (int o = 0; o < O_; ++o) {
    double* dst = h_.data() + o * pad_n_;
    const S* src = head + o * ld_head;
    for (Index j = 0; j < n; ++j) dst[j] = static_cast<double>(src[j]);
    std::fill(dst + n, dst + np, 0.0);
  }
}

template <class S>
double MixtureHead<S>::forward(const S* head, Index ld_head, const S* y, Index ld_y, Index n, double* per_sample) {
  load(head, ld_head, n);
  const Index np = padded(n);
  for (int l = 0; l < L_; ++l) {
    double* dst = y_.data() + l * pad_n_;
    for (Index j = 0; j < n; ++j) dst[j] = static_cast<double>(y[j * ld_y + l]);
    std::fill(dst + n, dst + np, 0.0);
  }
  const int K = K_, KL = K_ * L_;
  for (Index r = 0; r < np; r += W) {
    // log pi_k = a_k - logsumexp(a)
    const P lse_a = logsumexp(h_, 0, K, r);
    for (int k = 0; k < K; ++k) st(log_pi_, k, r, ei::psub(at(h_, k, r), lse_a));
    // log pi_k + log N_k, with the terms kept for the gradient.
    for (int k = 0; k < K; ++k) {
      P comp = at(log_pi_, k, r);
      for (int l = 0; l < L_; ++l) {
        const int j = k * L_ + l;
        const Scale sc = scale(at(h_, K + KL + j, r));
        st(inv_, j, r, sc.inv);
        st(dscale_, j, r, sc.dscale);
        st(logsig_, j, r, sc.logsig);
        if (F_ == 0) {  // diagonal: z = (y - mu) / sigma
          const P z = ei::pmul(ei::psub(at(y_, l, r), at(h_, K + j, r)), sc.inv);
          comp = ei::psub(comp, ei::padd(ei::padd(ei::pmul(c(0.5), ei::pmul(z, z)), sc.logsig), c(kHalfLog2Pi)));
          st(z_, j, r, z);
        } else {  // full: the residual y - mu first, v = U r below
          st(r_, j, r, ei::psub(at(y_, l, r), at(h_, K + j, r)));
        }
      }
      if (F_ > 0) {
        // v_i = r_i / s_i + sum_{j > i} U_ij r_j, into z_; log N_k = -sum_i (v_i^2 / 2 + log s_i) - L log(2 pi) / 2.
        const Index off = K + 2 * KL + static_cast<Index>(k) * F_;
        for (int i = 0, o = 0; i < L_; ++i) {
          const int ji = k * L_ + i;
          P v = ei::pmul(at(r_, ji, r), at(inv_, ji, r));
          for (int j = i + 1; j < L_; ++j, ++o) v = ei::pmadd(at(h_, off + o, r), at(r_, k * L_ + j, r), v);
          comp = ei::psub(comp, ei::padd(ei::padd(ei::pmul(c(0.5), ei::pmul(v, v)), at(logsig_, ji, r)), c(kHalfLog2Pi)));
          st(z_, ji, r, v);
        }
      }
      st(comp_, k, r, comp);
    }
    ei::pstore(lse_.data() + r, logsumexp(comp_, 0, K, r));
  }
  // The sum in sample order: the same for every level and every packet size.
  double total = 0;
  for (Index j = 0; j < n; ++j) total -= lse_(j);
  if (per_sample != nullptr)
    for (Index j = 0; j < n; ++j) per_sample[j] = -lse_(j);
  return total;
}

template <class S>
double MixtureHead<S>::nll(const S* head, Index ld_head, const S* y, Index ld_y, Index n, double* per_sample) {
  const FlushDenormals flush;
  return forward(head, ld_head, y, ld_y, n, per_sample);
}

template <class S>
double MixtureHead<S>::nll_and_grad(const S* head, Index ld_head, const S* y, Index ld_y, Index n, S* dhead,
                                    Index ld_dhead, double* per_sample) {
  const FlushDenormals flush;
  const double total = forward(head, ld_head, y, ld_y, n, per_sample);
  const Index np = padded(n);
  const int K = K_, KL = K_ * L_;
  for (Index r = 0; r < np; r += W) {
    const P lse = ei::pload<P>(lse_.data() + r);
    for (int k = 0; k < K; ++k) {
      const P gamma = ei::pexp(ei::psub(at(comp_, k, r), lse));  // responsibility, <= 1
      st(d_, k, r, ei::psub(ei::pexp(at(log_pi_, k, r)), gamma));
      if (F_ == 0) {
        for (int l = 0; l < L_; ++l) {
          const int j = k * L_ + l;
          const P z = at(z_, j, r);
          st(d_, K + j, r, ei::pnegate(ei::pmul(ei::pmul(gamma, z), at(inv_, j, r))));
          st(d_, K + KL + j, r, ei::pmul(ei::pmul(gamma, ei::psub(c(1), ei::pmul(z, z))), at(dscale_, j, r)));
        }
        continue;
      }
      // Full: v = U r in z_. dmu = -gamma U^T v, dr_i = gamma (1 - v_i r_i / s_i) (ds/dr) / s_i,
      // dU_ij = gamma v_i r_j (i < j).
      const Index off = K + 2 * KL + static_cast<Index>(k) * F_;
      for (int j = 0; j < L_; ++j) {
        const int jj = k * L_ + j;
        P w = ei::pmul(at(z_, jj, r), at(inv_, jj, r));  // (U^T v)_j = v_j / s_j + sum_{i < j} U_ij v_i
        for (int i = 0; i < j; ++i) {
          const int o = i * (2 * L_ - i - 1) / 2 + (j - i - 1);  // (i, j) in the row-major upper triangle
          w = ei::pmadd(at(h_, off + o, r), at(z_, k * L_ + i, r), w);
        }
        st(d_, K + jj, r, ei::pnegate(ei::pmul(gamma, w)));
      }
      for (int i = 0, o = 0; i < L_; ++i) {
        const int ji = k * L_ + i;
        const P v = at(z_, ji, r);
        const P gv = ei::pmul(gamma, v);
        const P vr = ei::pmul(ei::pmul(v, at(r_, ji, r)), at(inv_, ji, r));
        st(d_, K + KL + ji, r, ei::pmul(ei::pmul(gamma, ei::psub(c(1), vr)), at(dscale_, ji, r)));
        for (int j = i + 1; j < L_; ++j, ++o) st(d_, off + o, r, ei::pmul(gv, at(r_, k * L_ + j, r)));
      }
    }
  }
  for (int o = 0; o < O_; ++o) {
    const double* src = d_.data() + o * pad_n_;
    S* dst = dhead + o * ld_dhead;
    for (Index j = 0; j < n; ++j) dst[j] = static_cast<S>(src[j]);
  }
  return total;
}

template <class S>
void MixtureHead<S>::parameters(const S* head, Index ld_head, Index n, double* pi, double* mu, double* sigma,
                                double* off, Index ld) {
  const FlushDenormals flush;
  load(head, ld_head, n);
  const Index np = padded(n);
  const int K = K_, KL = K_ * L_;
  const bool softplus = mode_ == SigmaMode::softplus;
  // pi into log_pi_, sigma into logsig_, then copied out.
  for (Index r = 0; r < np; r += W) {
    const P lse_a = logsumexp(h_, 0, K, r);
    for (int k = 0; k < K; ++k) st(log_pi_, k, r, ei::pexp(ei::psub(at(h_, k, r), lse_a)));
    for (int j = 0; j < KL; ++j) {
      const P raw = at(h_, K + KL + j, r);
      const P u = softplus ? raw : ei::psub(raw, c(log_sigma_min_));
      const P sp = ei::padd(ei::pmax(u, ei::pzero(u)), plog1p_nonneg(ei::pexp(ei::pnegate(ei::pabs(u)))));
      st(logsig_, j, r, softplus ? ei::padd(sp, c(sigma_min_)) : ei::pexp(ei::padd(sp, c(log_sigma_min_))));
    }
  }
  for (int k = 0; k < K; ++k)
    for (Index j = 0; j < n; ++j) pi[k * ld + j] = log_pi_(j, k);
  for (int q = 0; q < KL; ++q)
    for (Index j = 0; j < n; ++j) {
      mu[q * ld + j] = h_(j, K + q);
      sigma[q * ld + j] = logsig_(j, q);
    }
  if (off != nullptr)
    for (Index q = 0; q < static_cast<Index>(K) * F_; ++q)
      for (Index j = 0; j < n; ++j) off[q * ld + j] = h_(j, K + 2 * KL + q);
}

template class MixtureHead<float>;
template class MixtureHead<double>;

template <class S>
std::unique_ptr<MixtureKernel<S>> make_mixture(int components, int output_dim, SigmaMode mode, double sigma_min,
                                               Covariance covariance, Index max_n) {
  return std::make_unique<MixtureHead<S>>(components, output_dim, mode, sigma_min, covariance, max_n);
}

template std::unique_ptr<MixtureKernel<float>> make_mixture<float>(int, int, SigmaMode, double, Covariance, Index);
template std::unique_ptr<MixtureKernel<double>> make_mixture<double>(int, int, SigmaMode, double, Covariance, Index);

}  // namespace mdn::MDN_LEVEL
