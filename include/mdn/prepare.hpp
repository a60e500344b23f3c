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

/// Checks that run.dir is, or can be created as, a writable directory. Writes nothing.
void check_run_dir(const Config& c);

/// The run's last step: train.epochs whole epochs or train.max_steps, whichever comes first
/// (the config requires one of them).
std::int64_t total_steps(const Config& c, const BatchSpec& b);

/// The summary `mdn check` prints (rank 0's text; collective).
std::string summary(const Prepared& p, Comm& comm);

}  // namespace mdn
