// The predicted mixture of rows of inputs, in the data's units or the network's: what `mdn
// predict` and `mdn sample` write, what `mdn eval`'s scores are computed on (scores.hpp), and what
// the embedding API gives (mdn.hpp).
#pragma once

#include <Eigen/Core>

#include <vector>

#include "mdn/checkpoint.hpp"
#include "mdn/cpu.hpp"
#include "mdn/model.hpp"
#include "mdn/scores.hpp"

namespace mdn {

/// The mixture of every local row, in data units (or the network's normalised ones): pi (n, K), mu
/// and sigma (n, K L), sigma the square roots of the covariances' diagonals. With full covariance
/// also `factor` (n, K L L): per row and component the upper-triangular T (row-major) with
/// covariance T T^T, T = S_y U^-1 (U^-1 in normalised units).
struct Mixtures {
  Eigen::MatrixXd pi, mu, sigma;
  std::vector<double> factor;  // (n, K, L, L), empty for diagonal components
  Index K = 0, L = 0;
  bool full() const { return !factor.empty(); }
  /// Component k's factor T at row j.
  Eigen::Map<const RowMat<double>> tri(Index j, Index k) const { return {factor.data() + (j * K + k) * L * L, L, L}; }
  /// Row j's marginal of output l, in the buffers given (K values each).
  scores::Marginal marginal(Index j, Index l, double* w, double* m, double* s) const {
    for (Index k = 0; k < K; ++k) {
      w[k] = pi(j, k);
      m[k] = mu(j, k * L + l);
      s[k] = sigma(j, k * L + l);
    }
    return {static_cast<int>(K), w, m, s};
  }
};

/// The mixtures of the n columns of rows ((D [+ L], n), inputs normalised with the checkpoint's
/// statistics), computed at `level` in blocks of the checkpoint's micro-batch from the first
/// column (so a row's result is the same wherever the blocks are aligned alike: any P).
Mixtures mixtures(const Checkpoint& ck, CpuLevel level, const Mat<float>& rows, bool data_units = true);

/// Row j's marginal quantiles of output l at `levels` (each in (0, 1)) into out[q * stride], to
/// 1e-6 of the data's scale: y_std with normalisation, else the row's own standard deviation
/// (what `mdn predict --quantiles` writes; mix in data units).
void marginal_quantiles(const Mixtures& mix, const Normalization& norm, Index j, Index l,
                        const std::vector<double>& levels, double* out, Index stride);

/// `count` draws from row j's mixture into out (count, L), from the counter-based stream
/// (seed, stream): draw s uses counters [s (1 + 2L), (s + 1)(1 + 2L)): one uniform picks the
/// component with weights softmax(log pi / temperature), then L normals z give
/// y = mu + sigma_temperature * sigma z (full covariance: mu + sigma_temperature * T z).
void draw_samples(const Mixtures& mix, Index j, std::uint64_t stream, std::uint64_t seed, double temperature,
                  double sigma_temperature, Index count, double* out);

/// log p(y | x) of one row's mixture in mix's units (diagonal, or full through the factor T),
/// with the terms that do not depend on y computed once per row.
class RowDensity {
 public:
  explicit RowDensity(const Mixtures& mix) : mix_(mix), base_(mix.K), terms_(mix.K), w_(mix.L) {}

  /// Row j of the mixtures: the terms that do not depend on y.
  void set_row(Index j);
  /// log p(y | x) of the current row.
  double operator()(const double* y);

 private:
  const Mixtures& mix_;
  Index j_ = 0;
  Eigen::VectorXd base_, terms_, w_;
};

}  // namespace mdn
