#include "mdn/data.hpp"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "mdn/detmath.hpp"
#include "mdn/error.hpp"
#include "mdn/exact.hpp"
#include "mdn/h5.hpp"
#include "mdn/random.hpp"

namespace mdn {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ", ") + ("'" + e + "'");
  return s.empty() ? "none" : s;
}

const char* type_class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_VLEN: return "variable-length";
    default: return "unknown";
  }
}

DatasetInfo describe_dataset(hid_t file, const std::string& path, const std::string& name,
                             const std::string& what, const std::string& origin) {
  DatasetInfo d;
  d.name = name;
  const std::string where = fmt::format("{} '{}'", what, path);
  if (name.find('/') == std::string::npos || name.front() == '/') {
    if (!h5::link_exists(file, name))
      throw input_error("{}: no dataset '{}' ({}datasets in the file: {})", where, name,
                        origin.empty() ? "" : "named by " + origin + "; ", join(h5::dataset_paths(file, false, where, Exit::input)));
  }
  const std::string cannot = fmt::format("{}: cannot open dataset '{}'", where, name);
  const h5::Handle ds = h5::open_dataset(file, name, cannot, Exit::input);
  const h5::Shape shape = h5::dataset_shape(ds, cannot, Exit::input);
  d.bytes = shape.element_bytes;
  if (shape.type_class != H5T_FLOAT || (d.bytes != 4 && d.bytes != 8))
    throw input_error("{}: dataset '{}' holds {} {}-byte values; mdn reads float32 or float64", where,
                      name, type_class_name(shape.type_class), d.bytes);
  d.rank = static_cast<int>(shape.dims.size());
  if (d.rank < 1 || d.rank > 2)
    throw input_error("{}: dataset '{}' has {} dimensions; mdn reads (N, columns) or (N,)", where,
                      name, d.rank);
  const hsize_t dims[2] = {shape.dims[0], d.rank == 2 ? shape.dims[1] : 1};
  constexpr hsize_t kMax = static_cast<hsize_t>(std::numeric_limits<std::int32_t>::max());
  if (dims[0] == 0 || dims[1] == 0)
    throw input_error("{}: dataset '{}' is empty ({} x {})", where, name, dims[0], dims[1]);
  if (dims[1] > (1u << 20) || dims[0] > kMax * 64)
    throw input_error("{}: dataset '{}' has an implausible shape ({} x {})", where, name, dims[0], dims[1]);
  d.rows = static_cast<Index>(dims[0]);
  d.cols = static_cast<Index>(dims[1]);
  d.storage = h5::dataset_storage(ds, cannot, Exit::input);
  return d;
}

/// Available memory for the read, so that a hostile header cannot make mdn try to allocate
/// terabytes: physical memory of the node.
double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<double>(pages) * static_cast<double>(size) : 1e18;
}

/// Reads rows `range` of dataset `d` into `buffer`, a row-major (n, width) array of `mem_type`,
/// at column `offset` (one hyperslab read; HDF5 converts the file's type).
void read_dataset_into(hid_t file, const DatasetInfo& d, RowRange range, hid_t mem_type, void* buffer,
                       hsize_t width, hsize_t offset, const std::string& path, int& reads) {
  if (range.size() == 0) return;
  const std::string what = fmt::format("'{}': reading rows {}..{} of dataset '{}'", path,
                                       range.begin, range.end, d.name);
  const h5::Handle ds = h5::open_dataset(file, d.name, what, Exit::input);
  h5::read_rows(ds, mem_type, static_cast<hsize_t>(range.begin), static_cast<hsize_t>(range.size()),
                static_cast<hsize_t>(d.cols), buffer, width, offset, what, Exit::input);
  ++reads;
}

void read_dataset(hid_t file, const DatasetInfo& d, RowRange range, Eigen::MatrixXd& out,
                  const std::string& path, int& reads) {
  out.resize(d.cols, range.size());
  read_dataset_into(file, d, range, H5T_NATIVE_DOUBLE, out.data(), static_cast<hsize_t>(d.cols), 0, path, reads);
}

/// A node cannot hold the rows: refuse before allocating (a hostile header must not make mdn try).
void check_memory(const DataFileInfo& file, RowRange range, double bytes_per_value) {
  const double need = static_cast<double>(range.size()) * static_cast<double>(file.x.cols + file.y.cols) * bytes_per_value;
  const double have = physical_memory_bytes();
  if (need > 0.8 * have)
    throw input_error("'{}': reading {} rows of {} + {} columns needs {:.1f} GiB on this rank; the node "
                      "has {:.1f} GiB (use more ranks or nodes)",
                      file.path, range.size(), file.x.cols, file.y.cols, need / (1 << 30), have / (1 << 30));
}

Index first_bad_column(const Eigen::MatrixXd& m) {
  for (Index j = 0; j < m.cols(); ++j)
    if (!m.col(j).allFinite()) return j;
  return -1;
}

}  // namespace

DataFileInfo inspect_data(const std::string& path, const std::string& x_name, const std::string& y_name,
                          const std::string& what, const std::string& x_origin, const std::string& y_origin) {
  h5::quiet();
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    throw input_error("{}: '{}': no such file{}", what, path,
                      fs::path(path).is_relative() ? fmt::format(" (in the working directory '{}')", fs::current_path(ec).string())
                                                   : "");
  if (fs::is_directory(status)) throw input_error("{}: '{}' is a directory, not an HDF5 file", what, path);
  if (!h5::is_hdf5(path)) throw input_error("{}: '{}' is not an HDF5 file (or cannot be read)", what, path);
  const h5::Handle file = h5::open_file(path, fmt::format("{}: cannot open '{}'", what, path), Exit::input);
  DataFileInfo info;
  info.path = path;
  info.x = describe_dataset(file.get(), path, x_name, what, x_origin);
  if (y_name.empty()) return info;  // inputs only (predict, sample)
  info.y = describe_dataset(file.get(), path, y_name, what, y_origin);
  if (info.x.rows != info.y.rows)
    throw input_error("{} '{}': datasets '{}' and '{}' have different row counts ({} and {})", what, path,
                      x_name, y_name, info.x.rows, info.y.rows);
  return info;
}

RowRange shard_of(Index N, int P, int r) {
  return {N * r / P, N * (r + 1) / P};
}

int owner_of(Index row, Index N, int P) {
  // row >= floor(rN/P)  <=>  r <= ((row + 1) P - 1) / N
  return static_cast<int>(((row + 1) * P - 1) / N);
}

RowRange block_shard_of(Index N, Index block, int P, int r) {
  const Index blocks = (N + block - 1) / block;
  const Index b0 = blocks * r / P;
  const Index b1 = blocks * (r + 1) / P;
  return {std::min(N, b0 * block), std::min(N, b1 * block)};
}

RawRows read_rows(const DataFileInfo& file, RowRange range) {
  check_memory(file, range, 8.0 + 4.0);
  h5::quiet();
  const h5::Handle h = h5::open_file(file.path, fmt::format("cannot open '{}'", file.path), Exit::input);
  RawRows raw;
  read_dataset(h.get(), file.x, range, raw.x, file.path, raw.hyperslab_reads);
  if (!file.y.name.empty()) read_dataset(h.get(), file.y, range, raw.y, file.path, raw.hyperslab_reads);
  else raw.y.resize(0, range.size());
  const Index bx = first_bad_column(raw.x);
  const Index by = first_bad_column(raw.y);
  if (bx >= 0 && (by < 0 || bx <= by)) {
    raw.bad_row = range.begin + bx;
    raw.bad_dataset = file.x.name;
  } else if (by >= 0) {
    raw.bad_row = range.begin + by;
    raw.bad_dataset = file.y.name;
  }
  return raw;
}

Normalization Normalization::identity(Index D, Index L) {
  Normalization n;
  n.x_mean = Eigen::VectorXd::Zero(D);
  n.x_std = Eigen::VectorXd::Ones(D);
  n.y_mean = Eigen::VectorXd::Zero(L);
  n.y_std = Eigen::VectorXd::Ones(L);
  return n;
}

double Normalization::log_det_y() const {
  double sum = 0;
  if (enabled)
    for (Index l = 0; l < y_std.size(); ++l) sum += det::log(y_std(l));
  return sum;
}

namespace {

/// Mean and population std of value(f, j), f < F, over the N samples of all ranks (exact sums);
/// a constant column gets std 1.
template <class Value>
void column_stats(Index F, Index n, const Value& value, Index N, Comm& comm, Eigen::VectorXd& mean,
                  Eigen::VectorXd& stddev) {
  const auto sums = exact_sums_of(F, n, value, comm);
  mean = Eigen::Map<const Eigen::VectorXd>(sums.data(), F) / static_cast<double>(N);
  const auto sq = exact_sums_of(F, n, [&](Index f, Index j) {
    const double d = static_cast<double>(value(f, j)) - mean(f);
    return d * d;
  }, comm);
  stddev.resize(F);
  for (Index f = 0; f < F; ++f) {
    const double var = sq[static_cast<std::size_t>(f)] / static_cast<double>(N);
    stddev(f) = var > 0 ? std::sqrt(var) : 1.0;
  }
}

/// Settles the first non-finite row over all ranks: one error on every rank naming it.
void settle_bad_row(Index bad_row, const std::string& bad_dataset, const DataFileInfo& file, Comm& comm) {
  const std::int64_t bad = comm.min<std::int64_t>(bad_row < 0 ? std::numeric_limits<std::int64_t>::max() : bad_row);
  if (bad == std::numeric_limits<std::int64_t>::max()) return;
  // The rank holding the first bad row names its dataset.
  std::string dataset = bad_row == bad ? bad_dataset : std::string();
  comm.broadcast(dataset, owner_of(bad, file.x.rows, comm.size()));
  throw Error(Exit::input,
              fmt::format("'{}': dataset '{}' has a NaN or Inf in row {} (the first such row)", file.path,
                          dataset, bad),
              true);
}

/// float32 files: rows read straight into the (D + L, n) float array (no double copy), statistics
/// from the float values (exactly as from doubles: float-to-double is exact), normalised in place.
Mat<float> read_shard_float(const DataFileInfo& file, RowRange range, Comm& comm, const Normalization* norm,
                            Normalization* computed) {
  const Index D = file.x.cols, L = file.y.name.empty() ? 0 : file.y.cols, n = range.size();
  Mat<float> out;
  Index bad_row = -1;
  std::string bad_dataset;
  comm.collectively([&] {
    check_memory(file, range, 4.0);
    out.resize(D + L, n);
    h5::quiet();
    const h5::Handle h = h5::open_file(file.path, fmt::format("cannot open '{}'", file.path), Exit::input);
    int reads = 0;
    const auto width = static_cast<hsize_t>(D + L);
    read_dataset_into(h.get(), file.x, range, H5T_NATIVE_FLOAT, out.data(), width, 0, file.path, reads);
    if (L > 0) read_dataset_into(h.get(), file.y, range, H5T_NATIVE_FLOAT, out.data(), width, static_cast<hsize_t>(D), file.path, reads);
    for (Index j = 0; j < n && bad_row < 0; ++j) {
      if (!out.col(j).allFinite()) {
        bad_row = range.begin + j;
        bad_dataset = out.col(j).head(D).allFinite() ? file.y.name : file.x.name;
      }
    }
  });
  settle_bad_row(bad_row, bad_dataset, file, comm);
  Normalization stats;
  if (computed != nullptr) {
    const Index N = comm.sum<std::int64_t>(n);
    stats.enabled = true;
    column_stats(D, n, [&](Index f, Index j) { return out(f, j); }, N, comm, stats.x_mean, stats.x_std);
    column_stats(L, n, [&](Index f, Index j) { return out(D + f, j); }, N, comm, stats.y_mean, stats.y_std);
    *computed = stats;
    norm = &stats;
  }
  if (norm != nullptr && norm->enabled) {
    for (Index j = 0; j < n; ++j) {
      for (Index f = 0; f < D; ++f)
        out(f, j) = static_cast<float>((static_cast<double>(out(f, j)) - norm->x_mean(f)) / norm->x_std(f));
      for (Index f = 0; f < L; ++f)
        out(D + f, j) = static_cast<float>((static_cast<double>(out(D + f, j)) - norm->y_mean(f)) / norm->y_std(f));
    }
  }
  return out;
}

}  // namespace

Normalization compute_normalization(const RawRows& rows, Comm& comm) {
  const Index N = comm.sum<std::int64_t>(rows.x.cols());
  Normalization n;
  n.enabled = true;
  column_stats(rows.x.rows(), rows.x.cols(), [&](Index f, Index j) { return rows.x(f, j); }, N, comm, n.x_mean, n.x_std);
  column_stats(rows.y.rows(), rows.y.cols(), [&](Index f, Index j) { return rows.y(f, j); }, N, comm, n.y_mean, n.y_std);
  return n;
}

Mat<float> read_shard(const DataFileInfo& file, RowRange range, Comm& comm,
                      const Normalization* norm, Normalization* computed) {
  if (file.x.bytes == 4 && (file.y.name.empty() || file.y.bytes == 4))
    return read_shard_float(file, range, comm, norm, computed);
  RawRows raw;
  comm.collectively([&] { raw = read_rows(file, range); });
  settle_bad_row(raw.bad_row, raw.bad_dataset, file, comm);
  Normalization stats;
  if (computed != nullptr) {
    stats = compute_normalization(raw, comm);
    *computed = stats;
    norm = &stats;
  }
  const Index D = raw.x.rows();
  const Index L = raw.y.rows();
  Mat<float> out(D + L, range.size());
  if (norm != nullptr && norm->enabled) {
    out.topRows(D) = ((raw.x.colwise() - norm->x_mean).array().colwise() / norm->x_std.array()).cast<float>();
    if (L > 0)
      out.bottomRows(L) = ((raw.y.colwise() - norm->y_mean).array().colwise() / norm->y_std.array()).cast<float>();
  } else {
    out.topRows(D) = raw.x.cast<float>();
    out.bottomRows(L) = raw.y.cast<float>();
  }
  return out;
}

std::vector<std::int64_t> epoch_permutation(Index N, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> perm(static_cast<std::size_t>(N));
  for (Index i = 0; i < N; ++i) perm[static_cast<std::size_t>(i)] = i;
  rng::Sequence r(seed, rng::kPermutation + static_cast<std::uint64_t>(epoch));
  for (Index i = N - 1; i > 0; --i)
    std::swap(perm[static_cast<std::size_t>(i)], perm[r.below(static_cast<std::uint64_t>(i) + 1)]);
  return perm;
}

TrainData::TrainData(Comm& comm, Mat<float> shard, RowRange range, Index input_dim,
                     Index output_dim, const BatchSpec& spec)
    : comm_(comm), shard_(std::move(shard)), range_(range), D_(input_dim), L_(output_dim), spec_(spec) {
  // At most ceil(N/P) + m rows arrive per epoch (README, "Input data"): allocate that once.
  const Index P = comm.size();
  received_.resize(D_ + L_, (spec_.rows + P - 1) / P + spec_.micro);
  by_batch_.resize(static_cast<std::size_t>(spec_.batches_per_epoch()));
}

void TrainData::start_epoch(std::int64_t epoch) {
  const int P = comm_.size();
  const int me = comm_.rank();
  const Index N = spec_.rows;
  const Index B = spec_.batch;
  const Index m = spec_.micro;
  const Index per_batch = B / m;
  const auto perm = epoch_permutation(N, spec_.seed, epoch);
  const Index used = spec_.rows_per_epoch();

  std::vector<std::vector<std::int32_t>> send(static_cast<std::size_t>(P));
  std::vector<std::int64_t> counts(static_cast<std::size_t>(P), 0);
  std::vector<std::pair<int, Index>> need;  // (source rank, index within its block), in order
  for (auto& v : by_batch_) v.clear();
  for (Index pos = 0; pos < used; ++pos) {
    const Index row = perm[static_cast<std::size_t>(pos)];
    const Index b = pos / B;
    const Index j = (pos % B) / m;
    const Index g = b * per_batch + j;
    const int dest = static_cast<int>(g % P);
    const int src = owner_of(row, N, P);
    if (src == me) send[static_cast<std::size_t>(dest)].push_back(static_cast<std::int32_t>(row - range_.begin));
    if (dest == me) {
      auto& list = by_batch_[static_cast<std::size_t>(b)];
      if (list.empty() || list.back().index != j) {
        list.push_back({b, j, g, 0, static_cast<Index>(need.size())});
      }
      ++list.back().rows;
      need.emplace_back(src, counts[static_cast<std::size_t>(src)]++);
    }
  }
  const Index total = static_cast<Index>(need.size());
  MDN_CHECK(total <= received_.cols());
  std::vector<Index> first(static_cast<std::size_t>(P), 0);
  for (int s = 1; s < P; ++s)
    first[static_cast<std::size_t>(s)] = first[static_cast<std::size_t>(s - 1)] + counts[static_cast<std::size_t>(s - 1)];
  order_.resize(need.size());
  for (std::size_t k = 0; k < need.size(); ++k)
    order_[k] = first[static_cast<std::size_t>(need[k].first)] + need[k].second;

  comm_.exchange_rows(shard_.data(), static_cast<std::size_t>(D_ + L_), send, received_.data(), counts);
  max_held_ = std::max(max_held_, shard_.cols() + total);
}

void TrainData::load(const Micro& mb, Eigen::Ref<Mat<float>> x, Eigen::Ref<Mat<float>> y) const {
  for (Index k = 0; k < mb.rows; ++k) {
    const Index col = order_[static_cast<std::size_t>(mb.first + k)];
    x.col(k) = received_.col(col).head(D_);
    y.col(k) = received_.col(col).tail(L_);
  }
}

}  // namespace mdn
