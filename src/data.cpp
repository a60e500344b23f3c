#include "mdn/data.hpp"

#include <hdf5.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "mdn/detmath.hpp"
#include "mdn/error.hpp"
#include "mdn/exact.hpp"
#include "mdn/h5.hpp"
#include "mdn/kernels.hpp"
#include "mdn/random.hpp"
#include "mdn/shuffle.hpp"

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
  d.chunk_rows = static_cast<Index>(h5::chunk_rows(ds, cannot, Exit::input));
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

/// A node cannot hold the rows: refuse before allocating (a hostile header must not make mdn try).
void check_memory(const DataSet& data, Index rows) {
  const double need = static_cast<double>(rows) * static_cast<double>(data.x_cols() + data.y_cols()) * 4.0;
  const double have = physical_memory_bytes();
  if (need > 0.8 * have)
    throw input_error("'{}': reading {} rows of {} + {} columns needs {:.1f} GiB on this rank; the node has {:.1f} GiB "
                      "(use more ranks or nodes)",
                      data.files.front().path, rows, data.x_cols(), data.y_cols(), need / (1 << 30), have / (1 << 30));
}

/// `path` names an existing file that is not a directory.
void require_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    throw input_error("{}: '{}': no such file{}", what, path,
                      fs::path(path).is_relative() ? fmt::format(" (in the working directory '{}')", fs::current_path(ec).string())
                                                   : "");
  if (fs::is_directory(status)) throw input_error("{}: '{}' is a directory, not an HDF5 file", what, path);
}

}  // namespace

DataFileInfo inspect_data(const std::string& path, const std::string& x_name, const std::string& y_name,
                          const std::string& what, const std::string& x_origin, const std::string& y_origin) {
  h5::quiet();
  require_file(path, what);
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

std::vector<std::string> resolve_files(const std::vector<std::string>& entries, const std::string& what) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::vector<std::pair<std::string, std::string>> seen;  // canonical path, the name given
  const auto add = [&](const std::string& path, const std::string& entry) {
    require_file(path, what);
    std::error_code ec;
    const std::string canonical = fs::weakly_canonical(fs::absolute(path), ec).string();
    for (const auto& [c, name] : seen)
      if (c == canonical)
        throw input_error("{}: '{}' is named twice ({}{})", what, path,
                          name == path ? "" : fmt::format("also as '{}'", name),
                          entry == path ? "" : fmt::format("{}matched by '{}'", name == path ? "" : "; ", entry));
    seen.emplace_back(canonical, path);
    files.push_back(path);
  };
  for (const auto& entry : entries) {
    if (entry.find_first_of("*?[") == std::string::npos) {
      add(entry, entry);
      continue;
    }
    glob_t g{};
    const int rc = glob(entry.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
    globfree(&g);
    if (rc == GLOB_NOMATCH || (rc == 0 && matches.empty()))
      throw input_error("{}: the pattern '{}' matches no file", what, entry);
    if (rc != 0) throw input_error("{}: cannot expand the pattern '{}' (a directory cannot be read)", what, entry);
    std::sort(matches.begin(), matches.end());  // bytewise: char_traits<char> compares as unsigned char
    for (const auto& m : matches) add(m, entry);
  }
  if (files.empty()) throw input_error("{}: no file given", what);
  return files;
}

std::size_t DataSet::file_of(Index row) const {
  return static_cast<std::size_t>(std::upper_bound(first.begin(), first.end(), row) - first.begin()) - 1;
}

std::vector<std::pair<std::string, std::int64_t>> DataSet::recorded() const {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto& f : files) {
    std::error_code ec;
    const auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(f.path), ec);
    out.emplace_back(ec ? f.path : p.string(), f.x.rows);
  }
  return out;
}

DataSet inspect_dataset(const std::vector<std::string>& entries, const std::string& x_name, const std::string& y_name,
                        const std::string& what, const std::string& x_origin, const std::string& y_origin) {
  DataSet d;
  for (const auto& path : resolve_files(entries, what)) {
    DataFileInfo f = inspect_data(path, x_name, y_name, what, x_origin, y_origin);
    if (!d.files.empty()) {
      const DataFileInfo& a = d.files.front();
      if (f.x.cols != a.x.cols || f.y.cols != a.y.cols)
        throw input_error("{}: '{}' has {} inputs and {} outputs, but '{}' (the first file) has {} and {}", what, path,
                          f.x.cols, f.y.cols, a.path, a.x.cols, a.y.cols);
    }
    d.first.push_back(d.rows);
    d.rows += f.x.rows;
    d.files.push_back(std::move(f));
  }
  return d;
}

DataSet one_file(const DataFileInfo& file) {
  DataSet d;
  d.files = {file};
  d.first = {0};
  d.rows = file.x.rows;
  return d;
}

namespace {

/// Settles the first non-finite row over all ranks: one error on every rank naming it.
void settle_bad_row(Index bad_row, const std::string& bad_dataset, const DataSet& data, Comm& comm) {
  const std::int64_t bad = comm.min<std::int64_t>(bad_row < 0 ? std::numeric_limits<std::int64_t>::max() : bad_row);
  if (bad == std::numeric_limits<std::int64_t>::max()) return;
  // The rank holding the first bad row names its dataset.
  std::string dataset = bad_row == bad ? bad_dataset : std::string();
  comm.broadcast(dataset, owner_of(bad, data.rows, comm.size()));
  const std::size_t f = data.file_of(bad);
  const Index local = bad - data.first[f];
  throw Error(Exit::input,
              fmt::format("'{}': dataset '{}' has a NaN or Inf in row {} (the first such row{})", data.files[f].path,
                          dataset, local, data.files.size() > 1 ? fmt::format("; row {} of the dataset's {} files", bad, data.files.size()) : ""),
              true);
}

/// One dataset (x or y) of one file within a shard: file rows [begin, end) go to the shard's
/// columns from `column`, array rows [row, row + cols).
struct Piece {
  const DataFileInfo* file;
  const DatasetInfo* d;
  Index begin, end, column, row;
};

/// Reads a float64 piece in slabs of whole chunks (so that no chunk is read twice) into a double
/// buffer, and hands each slab (cols x rows, column-major) to `use` with its first shard column.
template <class Use>
void for_each_slab(const Piece& p, std::int64_t& bytes, const Use& use) {
  const Index cols = p.d->cols;
  Index slab = std::max<Index>(1, (Index{1} << 19) / cols);  // 4 MiB of doubles
  if (p.d->chunk_rows > 0) slab = std::max<Index>(1, slab / p.d->chunk_rows) * p.d->chunk_rows;
  std::vector<double> buffer(static_cast<std::size_t>(std::min(slab, p.end - p.begin) * cols));
  const std::string what = fmt::format("'{}': reading rows {}..{} of dataset '{}'", p.file->path, p.begin, p.end, p.d->name);
  const h5::Handle h = h5::open_file(p.file->path, what, Exit::input);
  const h5::Handle ds = h5::open_dataset(h.get(), p.d->name, what, Exit::input);
  for (Index a = p.begin; a < p.end;) {
    // Slabs end on chunk boundaries of the file.
    const Index b = std::min(p.end, p.d->chunk_rows > 0 ? (a / slab + 1) * slab : a + slab);
    h5::read_rows(ds, H5T_NATIVE_DOUBLE, static_cast<hsize_t>(a), static_cast<hsize_t>(b - a),
                  static_cast<hsize_t>(cols), buffer.data(), static_cast<hsize_t>(cols), 0, what, Exit::input);
    bytes += (b - a) * cols * 8;
    use(buffer.data(), p.column + (a - p.begin), b - a);
    a = b;
  }
}

}  // namespace

namespace {

/// Bytes this process has read through system calls (HDF5's preads among them); 0 where Linux's
/// /proc/self/io is missing.
std::int64_t io_read_bytes() {
  std::ifstream io("/proc/self/io");
  for (std::string line; std::getline(io, line);)
    if (line.rfind("rchar:", 0) == 0) return std::stoll(line.substr(6));
  return 0;
}

}  // namespace

Mat<float> read_shard(const DataSet& data, RowRange range, Comm& comm, const Normalization* norm,
                      Normalization* computed, ReadStats* stats) {
  const std::int64_t io_start = io_read_bytes();
  const Index D = data.x_cols(), L = data.y_cols(), W = D + L, n = range.size();
  ReadStats local_stats;
  ReadStats& st = stats != nullptr ? *stats : local_stats;
  st = ReadStats{};
  // The pieces of the shard: per file and dataset.
  std::vector<Piece> pieces;
  for (std::size_t f = 0; f < data.files.size(); ++f) {
    const Index a = std::max(range.begin, data.first[f]);
    const Index b = std::min(range.end, data.first[f] + data.files[f].x.rows);
    if (a >= b) continue;
    const DataFileInfo& file = data.files[f];
    pieces.push_back({&file, &file.x, a - data.first[f], b - data.first[f], a - range.begin, 0});
    if (L > 0) pieces.push_back({&file, &file.y, a - data.first[f], b - data.first[f], a - range.begin, D});
  }
  const bool computing = computed != nullptr;
  if (computing) norm = nullptr;
  const bool normalising_now = norm != nullptr && norm->enabled;
  const auto normalise_into = [&](const double* v, Index cols, Index row0, float* out_col, const Normalization& nm) {
    const Eigen::VectorXd& mean = row0 == 0 ? nm.x_mean : nm.y_mean;
    const Eigen::VectorXd& sd = row0 == 0 ? nm.x_std : nm.y_std;
    for (Index c = 0; c < cols; ++c) out_col[c] = static_cast<float>((v[c] - mean(c)) / sd(c));
  };

  Mat<float> out;
  ExactMoments moments(computing ? W : 0);
  Index bad_row = -1;
  std::string bad_dataset;
  const auto note_bad = [&](Index column, const DatasetInfo& d) {
    if (bad_row < 0 || range.begin + column < bad_row) {
      bad_row = range.begin + column;
      bad_dataset = d.name;
    }
  };
  comm.collectively([&] {
    check_memory(data, n);
    out.resize(W, n);
    h5::quiet();
    for (const Piece& p : pieces) {
      const std::string what = fmt::format("'{}': reading rows {}..{} of dataset '{}'", p.file->path, p.begin, p.end, p.d->name);
      if (p.d->bytes == 4) {  // straight into the array
        const h5::Handle h = h5::open_file(p.file->path, what, Exit::input);
        int reads = 0;
        read_dataset_into(h.get(), *p.d, {p.begin, p.end}, H5T_NATIVE_FLOAT, out.col(p.column).data(),
                          static_cast<hsize_t>(W), static_cast<hsize_t>(p.row), p.file->path, reads);
        st.bytes += (p.end - p.begin) * p.d->cols * 4;
        for (Index j = p.column; j < p.column + (p.end - p.begin); ++j) {
          if (!out.col(j).segment(p.row, p.d->cols).allFinite()) {
            note_bad(j, *p.d);
            break;
          }
        }
        continue;
      }
      // float64: statistics from the doubles (a second pass normalises), or normalised now.
      for_each_slab(p, st.bytes, [&](const double* v, Index column, Index rows) {
        const Index cols = p.d->cols;
        for (Index j = 0; j < rows; ++j) {
          const double* row = v + j * cols;
          bool finite = true;
          for (Index c = 0; c < cols; ++c) finite &= std::isfinite(row[c]);
          if (!finite) {
            note_bad(column + j, *p.d);
            return;
          }
          float* dst = out.col(column + j).data() + p.row;
          if (computing) {
            for (Index c = 0; c < cols; ++c) moments.add(p.row + c, row[c]);
          } else if (normalising_now) {
            normalise_into(row, cols, p.row, dst, *norm);
          } else {
            for (Index c = 0; c < cols; ++c) dst[c] = static_cast<float>(row[c]);
          }
        }
      });
    }
  });
  settle_bad_row(bad_row, bad_dataset, data, comm);

  Normalization found;
  if (computing) {
    for (const Piece& p : pieces)
      if (p.d->bytes == 4)
        for (Index j = p.column; j < p.column + (p.end - p.begin); ++j)
          for (Index c = 0; c < p.d->cols; ++c) moments.add(p.row + c, static_cast<double>(out(p.row + c, j)));
    Eigen::VectorXd mean, sd;
    moments.finish(comm.sum<std::int64_t>(n), comm, mean, sd);
    found.enabled = true;
    found.x_mean = mean.head(D);
    found.x_std = sd.head(D);
    found.y_mean = mean.tail(L);
    found.y_std = sd.tail(L);
    *computed = found;
    norm = &found;
  }
  if (norm == nullptr || !norm->enabled) {
    st.io_bytes = io_read_bytes() - io_start;
    return out;
  }
  // float32 pieces in place; float64 ones normalised now if their statistics were just computed.
  comm.collectively([&] {
    for (const Piece& p : pieces) {
      if (p.d->bytes == 4) {
        std::vector<double> row(static_cast<std::size_t>(p.d->cols));
        for (Index j = p.column; j < p.column + (p.end - p.begin); ++j) {
          float* col = out.col(j).data() + p.row;
          for (Index c = 0; c < p.d->cols; ++c) row[static_cast<std::size_t>(c)] = static_cast<double>(col[c]);
          normalise_into(row.data(), p.d->cols, p.row, col, *norm);
        }
      } else if (computing) {
        st.passes = 2;
        for_each_slab(p, st.bytes, [&](const double* v, Index column, Index rows) {
          for (Index j = 0; j < rows; ++j)
            normalise_into(v + j * p.d->cols, p.d->cols, p.row, out.col(column + j).data() + p.row, *norm);
        });
      }
    }
  });
  st.io_bytes = io_read_bytes() - io_start;
  return out;
}

TrainData::TrainData(Comm& comm, Mat<float> shard, RowRange range, Index input_dim,
                     Index output_dim, const BatchSpec& spec, CpuLevel level)
    : comm_(comm),
      shard_(std::move(shard)),
      range_(range),
      D_(input_dim),
      L_(output_dim),
      spec_(spec),
      shuffle_lanes_(kernels<float>(level).shuffle_lanes) {
  // Micro-batch g holds positions [g m, ...) of the epoch's rows in use (m divides B, so only the
  // epoch's last micro-batch is short) and belongs to rank g mod P, as its (g / P)-th: its rows
  // go to columns [(g / P) m, ...) of rows_.
  const Index P = comm.size(), me = comm.rank(), m = spec_.micro;
  const Index G = spec_.micro_batches_per_epoch();
  const Index mine = G > me ? (G - me + P - 1) / P : 0;
  MDN_CHECK(mine * m < (Index{1} << 32));  // columns travel as 32-bit numbers
  rows_.setZero(D_ + L_, mine * m);  // its pages faulted in here, once, not in an epoch's start
  by_batch_.resize(static_cast<std::size_t>(spec_.batches_per_epoch()));
  const Index per_batch = spec_.batch / m;
  for (Index g = me; g < G; g += P) {
    const Index b = g / per_batch, j = g % per_batch;
    by_batch_[static_cast<std::size_t>(b)].push_back({b, j, g, std::min(m, spec_.batch_rows(b) - j * m), g / P * m});
  }
  for (const auto& list : by_batch_)
    for (const Micro& mb : list) slots_ = std::max(slots_, mb.first + mb.rows);
}

void TrainData::start_epoch(std::int64_t epoch) {
  const int P = comm_.size();
  const int me = comm_.rank();
  const Index W = D_ + L_;
  const auto N = static_cast<std::uint64_t>(spec_.rows), m = static_cast<std::uint64_t>(spec_.micro);
  const auto Pu = static_cast<std::uint64_t>(P), meu = static_cast<std::uint64_t>(me);
  const IndexShuffle order(N, spec_.seed, rng::kPermutation + static_cast<std::uint64_t>(epoch));
  const auto copy_row = [&](const float* src, Index slot) {
    float* dst = rows_.col(slot).data();
    for (Index c = 0; c < W; ++c) dst[c] = src[c];
  };
  // The first row of every rank's shard, and the rank owning a row without a division: a
  // candidate from floating point, corrected against the exact starts.
  std::vector<Index> start(static_cast<std::size_t>(P) + 1);
  for (int r = 0; r <= P; ++r) start[static_cast<std::size_t>(r)] = shard_of(spec_.rows, P, r).begin;
  const double ranks_per_row = static_cast<double>(P) / static_cast<double>(spec_.rows);
  const auto owner = [&](Index row) {
    if (P == 1) return 0;
    int o = std::min(P - 1, static_cast<int>(static_cast<double>(row) * ranks_per_row));
    while (row < start[static_cast<std::size_t>(o)]) --o;
    while (row >= start[static_cast<std::size_t>(o) + 1]) ++o;
    return o;
  };
  const auto round_slots = static_cast<std::uint64_t>(round_slots_);
  rounds_ = static_cast<int>(comm_.max<std::int64_t>((slots_ + round_slots_ - 1) / round_slots_));
  // Per round: the slots whose rows other ranks hold, and the requests (each a row's index in its
  // owner's shard), both grouped by owner; then the requests this rank serves and the rows.
  std::vector<std::vector<std::int32_t>> wanted(static_cast<std::size_t>(P));   // by owner
  std::vector<std::vector<std::uint32_t>> wanted_slot(static_cast<std::size_t>(P));
  std::vector<std::int32_t> request;
  std::vector<std::size_t> request_at(static_cast<std::size_t>(P) + 1);
  std::vector<char> asked, rows_in;
  std::vector<float> rows_out;
  std::vector<std::size_t> asked_at, out_at(static_cast<std::size_t>(P) + 1), in_at;
  constexpr int kBatch = 32;
  for (int round = 0; round < rounds_; ++round) {
    const std::uint64_t t0 = std::min<std::uint64_t>(static_cast<std::uint64_t>(slots_), round * round_slots);
    const std::uint64_t t1 = std::min<std::uint64_t>(static_cast<std::uint64_t>(slots_), t0 + round_slots);
    // Slot t of this rank: row t % m of its micro-batch t / m, which is micro-batch
    // g = me + (t / m) P of the epoch, so at position g m + t % m. The stream asks for the slots
    // in order, so the position steps along without a division.
    std::uint64_t next_t = t0, pos = (meu + t0 / m * Pu) * m + t0 % m, in_micro = t0 % m;
    const auto position = [&](std::uint64_t t) {
      MDN_CHECK(t == next_t);
      const std::uint64_t p = pos;
      ++next_t;
      if (++in_micro == m) {  // on to this rank's next micro-batch: P micro-batches further
        in_micro = 0;
        pos += (Pu - 1) * m + 1;
      } else {
        ++pos;
      }
      return p;
    };
    ShuffleStream<false, decltype(position)> stream(order, t0, t1, position, shuffle_lanes_);
    for (int r = 0; r < P; ++r) {
      wanted[static_cast<std::size_t>(r)].clear();
      wanted_slot[static_cast<std::size_t>(r)].clear();
    }
    // Batches of (slot, row) pairs, two in flight: the shard's rows of the next batch are fetched
    // while the current one is copied.
    struct Batch {
      int n = 0;
      std::uint64_t slot[kBatch], row[kBatch];
      int held_by[kBatch];
    } batches[2];
    const auto fill_batch = [&](Batch& b) {
      b.n = 0;
      while (b.n < kBatch && stream.next(b.slot[b.n], b.row[b.n])) ++b.n;
      for (int k = 0; k < b.n; ++k) {
        b.held_by[k] = owner(static_cast<Index>(b.row[k]));
        if (b.held_by[k] == me) __builtin_prefetch(shard_.col(static_cast<Index>(b.row[k]) - range_.begin).data());
      }
    };
    fill_batch(batches[0]);
    for (int cur = 0; batches[cur].n > 0; cur ^= 1) {
      fill_batch(batches[cur ^ 1]);
      const Batch& b = batches[cur];
      for (int k = 0; k < b.n; ++k) {
        if (b.held_by[k] == me) {
          copy_row(shard_.col(static_cast<Index>(b.row[k]) - range_.begin).data(), static_cast<Index>(b.slot[k]));
        } else {
          const auto o = static_cast<std::size_t>(b.held_by[k]);
          wanted[o].push_back(static_cast<std::int32_t>(static_cast<Index>(b.row[k]) - start[o]));
          wanted_slot[o].push_back(static_cast<std::uint32_t>(b.slot[k]));
        }
      }
    }
    if (P == 1) continue;
    // The requests, grouped by owner, in slot order within each owner.
    request.clear();
    for (int r = 0; r < P; ++r) {
      request_at[static_cast<std::size_t>(r)] = request.size() * sizeof(std::int32_t);
      request.insert(request.end(), wanted[static_cast<std::size_t>(r)].begin(), wanted[static_cast<std::size_t>(r)].end());
    }
    request_at[static_cast<std::size_t>(P)] = request.size() * sizeof(std::int32_t);
    const std::vector<std::size_t>& bytes = request_at;
    comm_.exchange_bytes(reinterpret_cast<const char*>(request.data()), bytes, asked, asked_at);
    // The rows this rank was asked for, in the order asked, grouped by the asking rank.
    const std::size_t row_bytes = static_cast<std::size_t>(W) * sizeof(float);
    rows_out.resize(asked.size() / sizeof(std::int32_t) * static_cast<std::size_t>(W));
    for (int r = 0; r <= P; ++r)
      out_at[static_cast<std::size_t>(r)] = asked_at[static_cast<std::size_t>(r)] / sizeof(std::int32_t) * row_bytes;
    // The asked rows are scattered over the shard: each is fetched kAhead requests before it is
    // copied, so that the cache misses overlap instead of following one another.
    const std::size_t n_asked = asked.size() / sizeof(std::int32_t);
    const auto asked_row = [&](std::size_t k) {
      std::int32_t local = 0;
      std::memcpy(&local, asked.data() + k * sizeof(local), sizeof(local));
      MDN_CHECK(local >= 0 && local < shard_.cols());
      return shard_.col(local).data();
    };
    constexpr std::size_t kAhead = 16;
    for (std::size_t k = 0; k < std::min(kAhead, n_asked); ++k) __builtin_prefetch(asked_row(k));
    for (std::size_t k = 0; k < n_asked; ++k) {
      if (k + kAhead < n_asked) __builtin_prefetch(asked_row(k + kAhead));
      const float* src = asked_row(k);
      float* dst = rows_out.data() + k * static_cast<std::size_t>(W);
      for (Index c = 0; c < W; ++c) dst[c] = src[c];
    }
    comm_.exchange_bytes(reinterpret_cast<const char*>(rows_out.data()), out_at, rows_in, in_at);
    // They arrive grouped by owner, in the order this rank asked.
    MDN_CHECK(rows_in.size() == request.size() * row_bytes);
    std::size_t k = 0;
    for (const auto& slots : wanted_slot)
      for (const std::uint32_t slot : slots) copy_row(reinterpret_cast<const float*>(rows_in.data() + k++ * row_bytes), slot);
  }
}

void TrainData::load(const Micro& mb, Eigen::Ref<Mat<float>> x, Eigen::Ref<Mat<float>> y) const {
  x.leftCols(mb.rows) = rows_.block(0, mb.first, D_, mb.rows);
  y.leftCols(mb.rows) = rows_.block(D_, mb.first, L_, mb.rows);
}

}  // namespace mdn
