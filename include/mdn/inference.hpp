// Using a trained model: `mdn eval`, `mdn predict`, `mdn sample`, `mdn inspect`.
//
// All take a checkpoint written by any number of ranks and run on any number of ranks: rows are
// split in whole blocks of the run's micro-batch size, as in validation, so every result is the
// same for any P. Outputs are in the data's own units. The kernels run at the checkpoint's
// instruction-set level when every rank supports it (so `mdn eval` reproduces the validation NLL
// of training to the bit), else at the best level every rank supports; --cpu forces one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mdn/comm.hpp"

namespace mdn {

struct EvalOptions {
  std::string checkpoint;
  std::vector<std::string> data;  ///< files and glob patterns (as data.train)
  std::string x;  ///< empty: the checkpoint's data.x
  std::string y;  ///< empty: the checkpoint's data.y
  std::string cpu = "auto";  ///< the kernels' level, as run.cpu
  bool json = false;
  std::int64_t hdr_samples = 1000;  ///< draws per row for the HDR coverage; 0: not computed
};
/// Prints the mean NLL per sample, the row count and the calibration (scores.hpp) (rank 0).
/// Returns the exit code.
int eval_command(const EvalOptions& o, Comm& comm);

/// The files of a command that runs a model over the rows of an input file.
struct ModelInputs {
  std::string checkpoint;
  std::vector<std::string> input;  ///< files and glob patterns (as data.train)
  std::string x;  ///< dataset of inputs; empty: the checkpoint's data.x
  std::string output;
  std::string cpu = "auto";  ///< the kernels' level, as run.cpu
};

struct PredictOptions : ModelInputs {
  std::vector<double> quantiles;  ///< levels in (0, 1) of the marginal quantiles to write
};
/// Writes pi (N, K), mu and sigma (N, K, L), mean, variance and mode (N, L) to `output`, and
/// quantiles (N, Q, L) when asked for.
int predict_command(const PredictOptions& o, Comm& comm);

struct SampleOptions : ModelInputs {
  std::int64_t samples = 1;
  double temperature = 1.0;        ///< pi = softmax(logits / temperature)
  double sigma_temperature = 1.0;  ///< sigma multiplied by this
  std::uint64_t seed = 0;
};
/// Writes `samples` (N, S, L): draws from each row's mixture, counter-based in (seed, row, sample).
int sample_command(const SampleOptions& o, Comm& comm);

struct InspectOptions {
  std::string checkpoint;
  bool json = false;
};
/// Describes a checkpoint; exit code 2 when its checksum does not hold.
int inspect_command(const InspectOptions& o, Comm& comm);

}  // namespace mdn
