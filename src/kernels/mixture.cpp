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
MixtureHead<S>::MixtureHead(int components, int output_dim, SigmaMode mode, double sigma_min, Index max_n)
    : K_(components),
      L_(output_dim),
      O_(components * (1 + 2 * output_dim)),
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
      lse_(pad_n_),
      d_(pad_n_, O_) {}

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
  const bool softplus = mode_ == SigmaMode::softplus;
  for (Index r = 0; r < np; r += W) {
    // log pi_k = a_k - logsumexp(a)
    const P lse_a = logsumexp(h_, 0, K, r);
    for (int k = 0; k < K; ++k) st(log_pi_, k, r, ei::psub(at(h_, k, r), lse_a));
    // log pi_k + log N_k, with the scale terms kept for the gradient.
    for (int k = 0; k < K; ++k) {
      P comp = at(log_pi_, k, r);
      for (int l = 0; l < L_; ++l) {
        const int j = k * L_ + l;
        const P raw = at(h_, K + KL + j, r);
        const P u = softplus ? raw : ei::psub(raw, c(log_sigma_min_));
        const P e = ei::pexp(ei::pnegate(ei::pabs(u)));           // in (0, 1]
        const P one_e = ei::padd(c(1), e);
        const P logistic = ei::pselect(ei::pcmp_le(ei::pzero(u), u), ei::pdiv(c(1), one_e), ei::pdiv(e, one_e));
        const P sp = ei::padd(ei::pmax(u, ei::pzero(u)), plog1p_nonneg(e));  // softplus(u)
        P logsig, inv, dscale;
        if (softplus) {  // sigma = softplus(raw) + sigma_min; dsigma/draw = logistic(raw)
          const P sigma = ei::padd(sp, c(sigma_min_));
          inv = ei::pdiv(c(1), sigma);
          dscale = ei::pmul(logistic, inv);
          logsig = ei::plog(sigma);
        } else {  // log sigma = logaddexp(raw, log sigma_min); (dsigma/draw) / sigma = logistic(u)
          logsig = ei::padd(sp, c(log_sigma_min_));
          inv = ei::pexp(ei::pnegate(logsig));
          dscale = logistic;
        }
        const P z = ei::pmul(ei::psub(at(y_, l, r), at(h_, K + j, r)), inv);
        comp = ei::psub(comp, ei::padd(ei::padd(ei::pmul(c(0.5), ei::pmul(z, z)), logsig), c(kHalfLog2Pi)));
        st(z_, j, r, z);
        st(inv_, j, r, inv);
        st(dscale_, j, r, dscale);
        st(logsig_, j, r, logsig);
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
      for (int l = 0; l < L_; ++l) {
        const int j = k * L_ + l;
        const P z = at(z_, j, r);
        st(d_, K + j, r, ei::pnegate(ei::pmul(ei::pmul(gamma, z), at(inv_, j, r))));
        st(d_, K + KL + j, r, ei::pmul(ei::pmul(gamma, ei::psub(c(1), ei::pmul(z, z))), at(dscale_, j, r)));
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
                                Index ld) {
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
}

template class MixtureHead<float>;
template class MixtureHead<double>;

template <class S>
std::unique_ptr<MixtureKernel<S>> make_mixture(int components, int output_dim, SigmaMode mode, double sigma_min,
                                               Index max_n) {
  return std::make_unique<MixtureHead<S>>(components, output_dim, mode, sigma_min, max_n);
}

template std::unique_ptr<MixtureKernel<float>> make_mixture<float>(int, int, SigmaMode, double, Index);
template std::unique_ptr<MixtureKernel<double>> make_mixture<double>(int, int, SigmaMode, double, Index);

}  // namespace mdn::MDN_LEVEL
