// The embedding library's implementation (include/mdn/mdn.hpp): the checkpoint, the kernels of
// one level and the computations of `mdn predict`, `mdn eval` and `mdn sample`, without MPI.
#include "mdn/mdn.hpp"

#include <stdexcept>

#include "mdn/checkpoint.hpp"
#include "mdn/cpu.hpp"
#include "mdn/error.hpp"
#include "mdn/mixtures.hpp"
#include "mdn/random.hpp"

namespace mdn {

struct Model::Impl {
  Checkpoint ck;
  CpuLevel level = CpuLevel::x86_64;

  /// x (n, D) row-major, normalised as the data readers do: (double(x) - mean) / std, to float.
  Mat<float> inputs(const float* x, std::size_t n) const {
    const Index D = ck.model.input_dim;
    Mat<float> rows(D, static_cast<Index>(n));
    for (Index j = 0; j < static_cast<Index>(n); ++j)
      for (Index d = 0; d < D; ++d) {
        const double v = static_cast<double>(x[j * D + d]);
        rows(d, j) = static_cast<float>(ck.norm.enabled ? (v - ck.norm.x_mean(d)) / ck.norm.x_std(d) : v);
      }
    return rows;
  }

  Mixtures of(const float* x, std::size_t n) const { return ::mdn::mixtures(ck, level, inputs(x, n)); }
};

namespace {

/// An mdn::Error as the std::runtime_error the interface promises (it is one already; this keeps
/// the library's own types out of what callers see).
template <class F>
auto rethrowing(F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw std::runtime_error(e.what());
  }
}

MixtureParams params_of(const Mixtures& mix, Index j) {
  const Index K = mix.K, L = mix.L;
  MixtureParams p;
  p.K = static_cast<int>(K);
  p.L = static_cast<int>(L);
  for (Index k = 0; k < K; ++k) {
    p.pi.push_back(mix.pi(j, k));
    for (Index l = 0; l < L; ++l) {
      p.mu.push_back(mix.mu(j, k * L + l));
      p.sigma.push_back(mix.sigma(j, k * L + l));
    }
  }
  if (mix.full())
    for (Index k = 0; k < K; ++k) {
      const auto t = mix.tri(j, k);
      const RowMat<double> cov = t * t.transpose();
      p.covariance.insert(p.covariance.end(), cov.data(), cov.data() + L * L);
    }
  return p;
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& checkpoint) {
  return rethrowing([&] {
    auto impl = std::make_unique<Impl>();
    impl->ck = read_checkpoint(checkpoint);
    // The level it was trained at when this CPU runs it (the same bits as training's
    // validation), else the best one it runs.
    const std::optional<CpuLevel> trained = parse_cpu_level(impl->ck.cpu_level);
    impl->level = trained && is_built(*trained) && cpu_supports(*trained) ? *trained : best_built_level();
    return Model(std::move(impl));
  });
}

int Model::input_dim() const { return impl_->ck.model.input_dim; }
int Model::output_dim() const { return impl_->ck.model.output_dim; }
int Model::components() const { return impl_->ck.model.components; }
bool Model::full_covariance() const { return impl_->ck.model.covariance == Covariance::full; }
std::string Model::cpu_level() const { return to_string(impl_->level); }

MixtureParams Model::mixture(const float* x) const {
  return rethrowing([&] { return params_of(impl_->of(x, 1), 0); });
}

std::vector<MixtureParams> Model::mixtures(const float* x, std::size_t n) const {
  return rethrowing([&] {
    const Mixtures mix = impl_->of(x, n);
    std::vector<MixtureParams> out;
    for (Index j = 0; j < static_cast<Index>(n); ++j) out.push_back(params_of(mix, j));
    return out;
  });
}

double Model::log_density(const float* x, const float* y) const {
  return rethrowing([&] {
    const Mixtures mix = impl_->of(x, 1);
    std::vector<double> yd(y, y + output_dim());
    RowDensity density(mix);
    density.set_row(0);
    return density(yd.data());
  });
}

std::vector<double> Model::sample(const float* x, std::size_t count, std::uint64_t seed, std::uint64_t row) const {
  return rethrowing([&] {
    const Mixtures mix = impl_->of(x, 1);
    std::vector<double> out(count * static_cast<std::size_t>(mix.L));
    draw_samples(mix, 0, rng::kSample + row, seed, 1.0, 1.0, static_cast<Index>(count), out.data());
    return out;
  });
}

std::vector<double> Model::quantiles(const float* x, const std::vector<double>& levels) const {
  return rethrowing([&] {
    for (double p : levels)
      if (!(p > 0 && p < 1)) throw input_error("quantile level {} is not in (0, 1)", p);
    const Mixtures mix = impl_->of(x, 1);
    const Index L = mix.L;
    std::vector<double> out(levels.size() * static_cast<std::size_t>(L));
    for (Index l = 0; l < L; ++l) marginal_quantiles(mix, impl_->ck.norm, 0, l, levels, out.data() + l, L);
    return out;
  });
}

}  // namespace mdn
