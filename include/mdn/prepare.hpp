// Everything `mdn check` validates and `mdn train` needs before it writes anything: the config,
// the data files (shapes, types, NaN scan, rows per rank), the normalisation, the run directory.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/config.hpp"
#include "mdn/cpu_choice.hpp"
#include "mdn/data.hpp"

namespace mdn {

struct Prepared {
  Config config;
  DataFileInfo train_file;
  std::optional<DataFileInfo> valid_file;
  Normalization norm;
  BatchSpec batches;
  ModelSpec model;
  RowRange train_range;       ///< this rank's shard
  Mat<float> train_shard;     ///< (D + L, rows) normalised
  RowRange valid_range;       ///< this rank's whole blocks of validation rows
  Mat<float> valid_shard;
  double read_seconds = 0;    ///< time spent reading and normalising
  std::optional<Normalization> fixed_norm;  ///< statistics to use instead of computing them
  bool skip_data = false;                   ///< set by before_reading: read no data at all
  bool resuming = false;                    ///< set by before_reading: continuing from a checkpoint
  std::optional<CpuLevel> previous_cpu;     ///< set by before_reading: the checkpoint's level
  CpuChoice cpu;                            ///< the kernels' level, agreed by every rank
};

/// Reads the config on rank 0 and shares it (collective); errors as mdn::Error on every rank.
Config load_config_collectively(const std::string& path, const std::vector<std::string>& sets,
                                Comm& comm);

/// All checks, then reads and normalises this rank's shards. Collective. `before_reading` runs
/// (on every rank) after the config and the file headers are validated and before the data is
/// read; setting `fixed_norm` there makes the shards use those statistics (a resumed run takes
/// them from its checkpoint) instead of computing them. Then the ranks agree on the kernels'
/// level (run.cpu, the checkpoint's level given as `previous_cpu`).
Prepared prepare(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm,
                 const std::function<void(Prepared&)>& before_reading = {});

/// Checks that run.dir is, or can be created as, a writable directory. Writes nothing.
void check_run_dir(const Config& c);

/// The run's last step: train.epochs whole epochs or train.max_steps, whichever comes first
/// (the config requires one of them).
std::int64_t total_steps(const Config& c, const BatchSpec& b);

/// The summary `mdn check` prints (rank 0's text; collective).
std::string summary(const Prepared& p, Comm& comm);

}  // namespace mdn
