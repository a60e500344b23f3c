// Checkpoints: self-describing, checksummed HDF5 files written atomically (README, "Checkpoints").
//
// Layout (format "mdn-checkpoint", format_version 4):
//   /                        attributes format, format_version, step, epoch, samples_seen,
//                            world_size, config (resolved YAML), best_valid_nll (NaN: none),
//                            cpu_level (the kernels' instruction-set level, cpu.hpp),
//                            permutation (the epochs' order: "feistel6", shuffle.hpp),
//                            train_files (the training files, one line "<rows> <absolute path>"
//                            each, in order), checksum, checksum_algorithm
//   /model                   attributes input_dim, output_dim, components, activation, sigma,
//                            sigma_min, hidden, covariance ("diagonal" or "full"; version 4)
//   /model/layers/<i>/weight (out, in) float32, like torch.nn.Linear.weight; <i> = 0, 1, ...
//   /model/layers/<i>/bias   (out,) float32; the last layer is the mixture head
//   /model/normalization/{x_mean, x_std, y_mean, y_std}  (D,) and (L,) float64, when normalising
//   /optimizer               attributes name, step
//   /optimizer/<state>/layers/<i>/{weight, bias}  the optimizer's state in the same layout
//
// Checksum: xxh3-64 over the raw bytes of every dataset in lexicographic order of its path
// (without the leading '/'), then step, epoch, samples_seen, world_size and the optimizer's step
// as little-endian int64, best_valid_nll as float64, the config text, (version 2) the
// cpu_level text, (version 3) the permutation and train_files texts, and (version 4) the
// covariance text. Versions 1 to 3 (no cpu_level; no permutation, which was then Fisher-Yates;
// diagonal components only) are still read, with their own checksums.
//
// Writing (rank 0): to "checkpoints/.step-XXXXXXXX.h5.tmp" (which no reader takes for a
// checkpoint), close, fsync the file, rename, fsync the directory: a crash at any moment leaves
// the previous checkpoint intact.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mdn/data.hpp"
#include "mdn/faults.hpp"
#include "mdn/model.hpp"
#include "mdn/optimizer.hpp"

namespace mdn {

constexpr int kCheckpointFormatVersion = 4;  ///< written; 1 to 4 are read

struct Checkpoint {
  std::int64_t step = 0;          ///< global batches consumed
  std::int64_t epoch = 0;         ///< completed epochs
  std::int64_t samples_seen = 0;
  std::int64_t world_size = 1;    ///< ranks at save
  double best_valid_nll = std::numeric_limits<double>::quiet_NaN();
  std::string config;             ///< resolved YAML
  /// From the stored config, which reading validates: the run's micro-batch (the block size of
  /// its validation) and its dataset names (0 and "" in a checkpoint built in memory).
  std::int64_t micro_batch = 0;
  std::string data_x, data_y;
  ModelSpec model;
  Normalization norm;
  Vec<float> params;              ///< flat, in the layout's order
  OptimizerKind optimizer = OptimizerKind::adam;
  std::int64_t optimizer_steps = 0;
  std::vector<std::pair<std::string, Vec<float>>> optimizer_state;  ///< name, flat buffer
  std::string cpu_level;          ///< the level it was trained with ("x86-64-v3"); "" in version 1
  std::string permutation;        ///< the epochs' order scheme ("fisher-yates" before version 3)
  std::vector<std::pair<std::string, std::int64_t>> train_files;  ///< resolved path, rows (version 3)
  std::int64_t format_version = kCheckpointFormatVersion;  ///< as read
};

/// "<dir>/step-00000012.h5"
std::string checkpoint_name(const std::string& dir, std::int64_t step);
/// "<run_dir>/checkpoints"
std::string checkpoint_dir(const std::string& run_dir);
/// The step checkpoints in dir, by step, oldest first: names "step-XXXXXXXX.h5" only (a write's
/// temporary never matches).
std::vector<std::pair<std::int64_t, std::string>> step_checkpoints(const std::string& dir);

/// Writes `c` to `path` atomically (temporary name, fsync, rename, fsync of the directory).
/// Throws mdn::Error (exit 1) naming the file on any failure, leaving no temporary behind.
void write_checkpoint(const std::string& path, const Checkpoint& c, const Faults& faults = Faults::none());

/// The checksum stored in a file and the one recomputed from its contents (for `mdn inspect`).
struct ChecksumStatus {
  std::string stored;
  std::string computed;
  bool ok() const { return !stored.empty() && stored == computed; }
};

/// Reads and verifies a checkpoint: format, version, checksum, shapes, the stored config. Throws
/// mdn::Error (exit 2) naming the file and what is wrong. With `status`, a checksum mismatch is
/// reported there instead of thrown (the rest is still verified).
Checkpoint read_checkpoint(const std::string& path, ChecksumStatus* status = nullptr);

}  // namespace mdn
