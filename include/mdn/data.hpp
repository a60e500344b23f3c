// Input data: HDF5 files read in shards, normalised exactly, and dealt to ranks in micro-batches.
//
// Semantics (README, "Input data"):
// - A file holds a dataset of inputs (N, D) and of targets (N, L); float32 or float64; any
//   chunking and compression; a 1-D dataset is read as (N, 1).
// - Rank r of P reads one contiguous hyperslab, rows [floor(rN/P), floor((r+1)N/P)); no rank
//   reads the whole file.
// - Epoch e uses a permutation of 0..N-1 drawn from (run.seed, e) by Fisher-Yates with mdn's own
//   counter-based generator. Batch b is the rows at permutation positions [bB, (b+1)B); only the
//   last batch may be short (kept or dropped per train.drop_last). Micro-batch j of batch b is
//   positions [bB + jm, ...). Micro-batch g of the epoch (counting over all batches) belongs to
//   rank g mod P. None of this depends on P except the dealing.
// - Once per epoch each rank receives the rows of its micro-batches with one all-to-all
//   exchange; rows held per rank (shard + received) stay at most 2 ceil(N/P) + m.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/model.hpp"

namespace mdn {

struct DatasetInfo {
  std::string name;
  Index rows = 0;
  Index cols = 0;        ///< 1 for a 1-D dataset
  int rank = 0;          ///< 1 or 2
  std::size_t bytes = 0; ///< element size: 4 or 8
  std::string storage;   ///< "contiguous", "chunked", "chunked, gzip", ...
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

/// Rows `range` of x and y, transposed: x (D, n) and y (L, n) column-major, in double. One
/// hyperslab read per dataset. Checks every value is finite; the first non-finite row (global
/// index) is returned in bad_row (-1 when none).
struct RawRows {
  Eigen::MatrixXd x;
  Eigen::MatrixXd y;
  Index bad_row = -1;
  std::string bad_dataset;
  int hyperslab_reads = 0;  ///< H5Dread calls made, one per dataset (instrumentation for tests)
};
RawRows read_rows(const DataFileInfo& file, RowRange range);

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

/// Statistics of the rows held by all ranks, with exact sums: identical for any P. Collective.
Normalization compute_normalization(const RawRows& rows, Comm& comm);

/// Reads this rank's shard of a file (collectively settling errors: a non-finite value is
/// reported once with its file, dataset and first bad row) and returns it normalised as
/// (D + L, n) float, x rows first.
Mat<float> read_shard(const DataFileInfo& file, RowRange range, Comm& comm,
                      const Normalization* norm, Normalization* computed);

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

/// The epoch's permutation of 0..N-1 (identical on every rank, for any P).
std::vector<std::int64_t> epoch_permutation(Index N, std::uint64_t seed, std::int64_t epoch);

/// The training rows of this rank, redistributed every epoch into its micro-batches.
class TrainData {
 public:
  /// shard: (W = D + L, n) float rows [range) of the N rows; spec: batching.
  TrainData(Comm& comm, Mat<float> shard, RowRange range, Index input_dim, Index output_dim,
            const BatchSpec& spec);

  /// A micro-batch held by this rank.
  struct Micro {
    Index batch;     ///< batch (step) of the epoch
    Index index;     ///< micro-batch index within its batch
    Index global;    ///< g, over the epoch
    Index rows;      ///< <= m
    Index first;     ///< first entry in the rank's row order
  };

  /// Permutes and exchanges the rows of epoch `epoch`. Collective.
  void start_epoch(std::int64_t epoch);

  const BatchSpec& spec() const { return spec_; }
  Index input_dim() const { return D_; }
  Index output_dim() const { return L_; }
  /// This rank's micro-batches of batch b, in order; empty when it holds none of them.
  const std::vector<Micro>& micro_batches(Index b) const { return by_batch_[static_cast<std::size_t>(b)]; }
  /// Copies micro-batch `mb` into x (D, >= rows) and y (L, >= rows), leading columns.
  void load(const Micro& mb, Eigen::Ref<Mat<float>> x, Eigen::Ref<Mat<float>> y) const;

  /// Rows this rank read from the file, and the most rows it has held at once (shard plus
  /// received), for the memory promise.
  Index rows_read() const { return shard_.cols(); }
  Index max_rows_held() const { return max_held_; }

 private:
  Comm& comm_;
  Mat<float> shard_;       // (W, n)
  RowRange range_;
  Index D_, L_;
  BatchSpec spec_;
  Mat<float> received_;    // (W, capacity) rows of this epoch's micro-batches, by source rank
  std::vector<Index> order_;  // row order: order_[k] is the k-th needed row's column in received_
  std::vector<std::vector<Micro>> by_batch_;
  Index max_held_ = 0;
};

}  // namespace mdn

namespace mdn {

/// For evaluation: rank r's shard of whole blocks of `block` rows (the last block may be short),
/// so that every block, and the result of computing it, is the same for any P.
RowRange block_shard_of(Index N, Index block, int P, int r);

}  // namespace mdn
