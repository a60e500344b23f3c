// Everything `mdn check` validates and `mdn train` needs before it writes anything: the config,
// the data files (shapes, types, NaN scan, rows per rank), the normalisation, the run directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/config.hpp"
#include "mdn/cpu_choice.hpp"
#include "mdn/data.hpp"

namespace mdn {

/// The estimated peak memory of one rank (README, "Input data": the formula), in bytes.
struct MemoryEstimate {
  double shard = 0;       ///< its training rows: ceil(N/P) (D + L) 4
  double epoch = 0;       ///< the epoch's rows of its micro-batches: ceil(G/P) m (D + L) 4
  double exchange = 0;    ///< the exchange's send and receive buffers: 2 x 8 MiB when P > 1
  double reading = 0;     ///< a float64 slab (4 MiB) and the exact statistics' buckets
  double valid = 0;       ///< its validation rows
  double model = 0;       ///< parameters, gradients, reduction and optimizer state: 48 bytes each
  double activations = 0; ///< the step's work arrays: 2 m (D + L + 3 sum(hidden) + 3 heads) 4
  double process = 48.0 * (1 << 20);  ///< libraries, MPI and HDF5
  double total() const { return shard + epoch + exchange + reading + valid + model + activations + process; }
  double total_mib() const { return total() / (1 << 20); }
};

struct Prepared {
  Config config;
  DataSet train_data;
  std::optional<DataSet> valid_data;
  Normalization norm;
  BatchSpec batches;
  ModelSpec model;
  RowRange train_range;       ///< this rank's shard
  Mat<float> train_shard;     ///< (D + L, rows) normalised
  RowRange valid_range;       ///< this rank's whole blocks of validation rows
  Mat<float> valid_shard;
  double read_seconds = 0;    ///< time spent reading and normalising
  ReadStats train_read;       ///< what reading the training shard did
  MemoryEstimate memory;      ///< this rank's, for this P
  CpuChoice cpu;              ///< the kernels' level, agreed by every rank
};

/// What a resumed run takes from its checkpoint (resume.hpp) into the reading of its data and
/// the choice of its level.
struct Continuation {
  bool resuming = false;
  std::optional<Normalization> norm;  ///< the checkpoint's statistics, used instead of computing them
  std::optional<CpuLevel> cpu;        ///< the checkpoint's level (none: not recorded)
};

/// Reads the config on rank 0 and shares it (collective); errors as mdn::Error on every rank.
Config load_config_collectively(const std::string& path, const std::vector<std::string>& sets,
                                Comm& comm);

/// Every check that reads no data: the config, the data files' headers, the model, the batches,
/// the run directory. Collective; errors are mdn::Error on every rank.
Prepared prepare(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm);

/// Then the ranks agree on the kernels' level (run.cpu; a resumed run's checkpoint level), and
/// each reads and normalises its shards (with a resumed run's statistics). Collective.
void read_data(Prepared& p, const Continuation& from, Comm& comm);

/// The estimated peak memory of a rank of P (the largest shard).
MemoryEstimate estimate_memory(const Prepared& p, int P);

/// Checks that run.dir is, or can be created as, a writable directory. Writes nothing.
void check_run_dir(const Config& c);

/// The run's last step: train.epochs whole epochs or train.max_steps, whichever comes first
/// (the config requires one of them).
std::int64_t total_steps(const Config& c, const BatchSpec& b);

/// The summary `mdn check` prints (rank 0's text; collective).
std::string summary(const Prepared& p, Comm& comm);

}  // namespace mdn
