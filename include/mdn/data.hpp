// Input data: HDF5 files read in shards, normalised exactly, and dealt to ranks in micro-batches.
//
// Semantics (README, "Input data"):
// - A file holds a dataset of inputs (N, D) and of targets (N, L); float32 or float64; any
//   chunking and compression; a 1-D dataset is read as (N, 1).
// - Rank r of P reads one contiguous hyperslab, rows [floor(rN/P), floor((r+1)N/P)); no rank
//   reads the whole file.
// - Epoch e's order is IndexShuffle(N, run.seed, e) (shuffle.hpp): position p of the epoch holds
//   row shuffle(p). Batch b is the rows at positions [bB, (b+1)B); only the last batch may be
//   short (kept or dropped per train.drop_last). Micro-batch j of batch b is positions
//   [bB + jm, ...). Micro-batch g of the epoch (counting over all batches) belongs to rank
//   g mod P. None of this depends on P except the dealing.
// - At the start of an epoch each rank fills the slots of its micro-batches in order: it computes
//   each slot's row (the shuffle at the slot's position), copies its own rows from its shard and
//   asks the rows' owners for the others, in rounds of a bounded number of slots (one exchange of
//   requests and one of rows per round). No rank holds anything of size N: a rank holds its shard
//   and its epoch's rows, about 2 N/P rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/cpu.hpp"
#include "mdn/model.hpp"

namespace mdn {

class IndexShuffle;

struct DatasetInfo {
  std::string name;
  Index rows = 0;
  Index cols = 0;        ///< 1 for a 1-D dataset
  int rank = 0;          ///< 1 or 2
  std::size_t bytes = 0; ///< element size: 4 or 8
  std::string storage;   ///< "contiguous", "chunked", "chunked, gzip", ...
  Index chunk_rows = 0;  ///< rows per chunk (0: not chunked)
};

struct DataFileInfo {
  std::string path;
  DatasetInfo x;
  DatasetInfo y;
};

/// Opens `path` and checks datasets x_name and y_name: present, numeric float32/float64, rank 1
/// or 2, non-empty, with the same row count. An empty y_name reads inputs only (y.cols = 0).
/// `what` names the file's config key in messages (e.g. "configs/a.yaml:4:10: data.train");
/// x_origin and y_origin, when given, name where the dataset names come from (e.g.
/// "configs/a.yaml:10:6: data.x"), for a dataset that is not there. Throws mdn::Error (exit 2).
DataFileInfo inspect_data(const std::string& path, const std::string& x_name, const std::string& y_name,
                          const std::string& what, const std::string& x_origin = "",
                          const std::string& y_origin = "");

/// Expands a list of paths and glob patterns into files, in order: a pattern's matches sorted
/// bytewise. A pattern that matches nothing, a missing file, a directory, or a file named twice
/// (also through another name) is an error naming it; `what` names the key (exit 2).
std::vector<std::string> resolve_files(const std::vector<std::string>& entries, const std::string& what);

/// The files of one dataset (data.train, data.valid, --data, --input): rows numbered over the
/// files in order, as if they were one file. Files may differ in rows, chunking, compression and
/// float type; D and L agree.
struct DataSet {
  std::vector<DataFileInfo> files;
  std::vector<Index> first;  ///< the dataset row of each file's first row
  Index rows = 0;
  Index x_cols() const { return files.front().x.cols; }
  Index y_cols() const { return files.front().y.name.empty() ? 0 : files.front().y.cols; }
  /// The file holding dataset row `row`.
  std::size_t file_of(Index row) const;
  /// The files as a checkpoint records them: absolute canonical path and rows, in order.
  std::vector<std::pair<std::string, std::int64_t>> recorded() const;
};

/// Resolves `entries` and inspects every file (inspect_data); a file whose D or L differs from the
/// first file's is one error naming both. Throws mdn::Error (exit 2).
DataSet inspect_dataset(const std::vector<std::string>& entries, const std::string& x_name,
                        const std::string& y_name, const std::string& what, const std::string& x_origin = "",
                        const std::string& y_origin = "");
/// A dataset of the one file `path` (tests).
DataSet one_file(const DataFileInfo& file);

/// Rows [begin, end) of a dataset.
struct RowRange {
  Index begin = 0;
  Index end = 0;
  Index size() const { return end - begin; }
};

/// Rank r's contiguous shard of N rows over P ranks: [floor(rN/P), floor((r+1)N/P)).
RowRange shard_of(Index N, int P, int r);
/// The rank whose shard holds `row`.
int owner_of(Index row, Index N, int P);

/// Per-column standardisation: x_n = (x - mean) / std, population std (ddof 0), std = 1 where the
/// column is constant.
struct Normalization {
  bool enabled = false;
  Eigen::VectorXd x_mean, x_std, y_mean, y_std;
  /// The identity for D inputs and L outputs.
  static Normalization identity(Index D, Index L);
  /// sum_l log y_std_l: add to a normalised NLL to get it in the data's units.
  double log_det_y() const;
};

/// What reading a shard did (instrumentation for tests and the benchmark).
struct ReadStats {
  std::int64_t bytes = 0;    ///< bytes of values requested from the files (stored type)
  int passes = 1;            ///< 2 when a float64 dataset was read again to normalise it
  std::int64_t io_bytes = 0; ///< bytes the process read from files meanwhile (/proc/self/io rchar)
};

/// Reads rows `range` of the dataset (a rank's shard, across file boundaries) into a (D + L, n)
/// float array, x rows first, normalised with `norm`, or with the statistics of every rank's rows
/// computed exactly (ExactMoments) into `computed`, or not at all (both null). float32 datasets
/// are read straight into the array; float64 ones in slabs of whole chunks, converted after
/// normalising in double (a second pass over them when the statistics are computed). A NaN or
/// Inf is reported once with its file, dataset and first bad row. Collective.
Mat<float> read_shard(const DataSet& data, RowRange range, Comm& comm, const Normalization* norm,
                      Normalization* computed, ReadStats* stats = nullptr);

struct BatchSpec {
  Index rows = 0;        ///< N
  Index batch = 1;       ///< B, global
  Index micro = 1;       ///< m, divides B
  bool drop_last = false;
  std::uint64_t seed = 0;

  Index batches_per_epoch() const { return drop_last ? rows / batch : (rows + batch - 1) / batch; }
  Index rows_per_epoch() const { return drop_last ? rows / batch * batch : rows; }
  Index micro_batches_per_epoch() const { return (rows_per_epoch() + micro - 1) / micro; }
  /// Rows in batch b of an epoch.
  Index batch_rows(Index b) const { return std::min(batch, rows_per_epoch() - b * batch); }
};

/// The training rows of this rank, dealt every epoch into its micro-batches.
class TrainData {
 public:
  /// shard: (W = D + L, n) float rows [range) of the N rows; spec: batching; level: the kernels'
  /// instruction-set level (the epoch's order is computed with it; the order is the same at
  /// every level).
  TrainData(Comm& comm, Mat<float> shard, RowRange range, Index input_dim, Index output_dim,
            const BatchSpec& spec, CpuLevel level = CpuLevel::x86_64);

  /// A micro-batch held by this rank.
  struct Micro {
    Index batch;     ///< batch (step) of the epoch
    Index index;     ///< micro-batch index within its batch
    Index global;    ///< g, over the epoch
    Index rows;      ///< <= m
    Index first;     ///< its first row's column in the rank's epoch rows
  };

  /// Deals the rows of epoch `epoch`. Collective.
  void start_epoch(std::int64_t epoch);

  const BatchSpec& spec() const { return spec_; }
  Index input_dim() const { return D_; }
  Index output_dim() const { return L_; }
  /// This rank's micro-batches of batch b, in order; empty when it holds none of them.
  const std::vector<Micro>& micro_batches(Index b) const { return by_batch_[static_cast<std::size_t>(b)]; }
  /// Copies micro-batch `mb` into x (D, >= rows) and y (L, >= rows), leading columns.
  void load(const Micro& mb, Eigen::Ref<Mat<float>> x, Eigen::Ref<Mat<float>> y) const;

  /// Rows this rank read from the file, and the most rows it holds (shard plus the epoch's
  /// rows), for the memory promise.
  Index rows_read() const { return shard_.cols(); }
  Index max_rows_held() const { return shard_.cols() + rows_.cols(); }
  /// Rounds of the last epoch's exchange (instrumentation for tests and the benchmark).
  int exchange_rounds() const { return rounds_; }
  /// Slots filled per round of the exchange (a test may shrink it).
  void set_round_slots(Index slots) { round_slots_ = slots; }

 private:
  Comm& comm_;
  Mat<float> shard_;       // (W, n)
  RowRange range_;
  Index D_, L_;
  BatchSpec spec_;
  void (*shuffle_lanes_)(const IndexShuffle&, std::uint64_t*, bool);  // the level's rounds
  Mat<float> rows_;        // (W, capacity): the epoch's rows of this rank's micro-batches, in order
  std::vector<std::vector<Micro>> by_batch_;
  Index slots_ = 0;             // rows of this rank's micro-batches in an epoch
  Index round_slots_ = 1 << 16;
  int rounds_ = 0;
};

}  // namespace mdn

namespace mdn {

/// For evaluation: rank r's shard of whole blocks of `block` rows (the last block may be short),
/// so that every block, and the result of computing it, is the same for any P.
RowRange block_shard_of(Index N, Index block, int P, int r);

}  // namespace mdn
