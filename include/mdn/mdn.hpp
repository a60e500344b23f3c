// A trained mdn model inside another program (README, "Embedding in C++"): the library's whole
// public interface.
//
//   # CMake, after `cmake --install build --prefix PREFIX` (CMAKE_PREFIX_PATH=PREFIX):
//   find_package(mdn REQUIRED)
//   target_link_libraries(app PRIVATE mdn::mdn)
//
//   #include <mdn/mdn.hpp>
//   mdn::Model m = mdn::Model::load("runs/x/checkpoints/best.h5");
//   const mdn::MixtureParams p = m.mixture(x);       // x: input_dim() floats
//   const double logp = m.log_density(x, y);          // y: output_dim() floats
//
// Everything is in the data's units, computed as `mdn predict`, `mdn eval` and `mdn sample` do:
// the same kernels at the same instruction-set level (the checkpoint's, when this CPU runs it),
// the inputs normalised with the checkpoint's statistics. The library does not use MPI: the
// program neither initialises nor links it. Errors (an unreadable or corrupt checkpoint) are
// std::runtime_error naming the file. A Model reuses workspaces: use one per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(MDN_BUILDING_LIBRARY)
#define MDN_API __attribute__((visibility("default")))
#else
#define MDN_API
#endif

namespace mdn {

/// One input's mixture p(y | x), in the data's units.
struct MixtureParams {
  int K = 0;                       ///< components
  int L = 0;                       ///< outputs
  std::vector<double> pi;          ///< (K) mixing weights, summing to 1
  std::vector<double> mu;          ///< (K, L) means, component-major
  std::vector<double> sigma;       ///< (K, L) standard deviations (of y_l given the component)
  std::vector<double> covariance;  ///< (K, L, L) full covariance models only; empty otherwise
};

class MDN_API Model {
 public:
  /// Reads and checks a checkpoint (any format version, any rank count that wrote it).
  static Model load(const std::string& checkpoint);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  int input_dim() const;      ///< D
  int output_dim() const;     ///< L
  int components() const;     ///< K
  bool full_covariance() const;
  std::string cpu_level() const;  ///< the kernels' instruction-set level

  /// The mixture of one input (D floats).
  MixtureParams mixture(const float* x) const;
  /// The mixtures of n inputs, x row-major (n, D); computed in blocks like `mdn predict`, so for
  /// the rows of a file they are the numbers predict writes.
  std::vector<MixtureParams> mixtures(const float* x, std::size_t n) const;
  /// log p(y | x) in nats, data units (x: D floats, y: L floats).
  double log_density(const float* x, const float* y) const;
  /// `count` draws from the mixture of one input, (count, L) row-major. Draw s uses the
  /// counter-based stream of row `row` and seed `seed` exactly as `mdn sample --seed seed` does
  /// for global row `row` of its input (temperatures 1).
  std::vector<double> sample(const float* x, std::size_t count, std::uint64_t seed = 0, std::uint64_t row = 0) const;
  /// Marginal quantiles of each output at the given levels in (0, 1), (Q, L) row-major, as
  /// `mdn predict --quantiles` computes them (to 1e-6 of the data's scale).
  std::vector<double> quantiles(const float* x, const std::vector<double>& levels) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mdn
