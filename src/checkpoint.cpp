#include "mdn/checkpoint.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <thread>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <regex>

#include "mdn/config.hpp"
#include "mdn/error.hpp"
#include "mdn/faults.hpp"
#include "mdn/h5.hpp"

namespace mdn {

namespace {

constexpr const char* kFormat = "mdn-checkpoint";
constexpr const char* kChecksumAlgorithm =
    "xxh3-64 of: every dataset's raw little-endian bytes in lexicographic order of its path "
    "(no leading '/'); then step, epoch, samples_seen, world_size, /optimizer step as int64; "
    "best_valid_nll as float64; the config text; the cpu_level text; the permutation text; the train_files text; "
    "the covariance text";

std::vector<std::string> state_names(OptimizerKind k, bool momentum) {
  if (k == OptimizerKind::sgd) return momentum ? std::vector<std::string>{"momentum"} : std::vector<std::string>{};
  return {"exp_avg", "exp_avg_sq"};
}

/// The training files as stored: one line "<rows> <path>" per file.
std::string train_files_text(const std::vector<std::pair<std::string, std::int64_t>>& files) {
  std::string s;
  for (const auto& [path, rows] : files) s += fmt::format("{} {}\n", rows, path);
  return s;
}

/// The bytes the checksum covers after the datasets.
/// The checksum of format `version`.
std::string checksum_of(const std::map<std::string, std::string>& datasets, const Checkpoint& c, std::int64_t version) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  for (const auto& [path, bytes] : datasets) XXH3_64bits_update(st, bytes.data(), bytes.size());
  for (std::int64_t v : {c.step, c.epoch, c.samples_seen, c.world_size, c.optimizer_steps})
    XXH3_64bits_update(st, &v, sizeof v);
  XXH3_64bits_update(st, &c.best_valid_nll, sizeof c.best_valid_nll);
  XXH3_64bits_update(st, c.config.data(), c.config.size());
  if (version >= 2) XXH3_64bits_update(st, c.cpu_level.data(), c.cpu_level.size());
  if (version >= 3) {
    XXH3_64bits_update(st, c.permutation.data(), c.permutation.size());
    const std::string files = train_files_text(c.train_files);
    XXH3_64bits_update(st, files.data(), files.size());
  }
  if (version >= 4) {
    const std::string covariance = to_string(c.model.covariance);
    XXH3_64bits_update(st, covariance.data(), covariance.size());
  }
  const XXH64_hash_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return fmt::format("{:016x}", h);
}

std::string bytes_of(const void* p, std::size_t n) { return std::string(static_cast<const char*>(p), n); }

/// A slot's dataset shape: weights (out, in), biases (out,).
std::vector<hsize_t> slot_dims(const Slot& s) {
  if (s.kind == Slot::Kind::weight)
    return {static_cast<hsize_t>(s.rows), static_cast<hsize_t>(s.cols)};
  return {static_cast<hsize_t>(s.rows)};
}

// ---- writing ------------------------------------------------------------------------------------

class Writer {
 public:
  explicit Writer(const std::string& path) : path_(path) { file_ = h5::create_in_memory(path); }

  void group(const std::string& path) { h5::create_group(file_.get(), path, what(path)); }

  template <class T>
  void dataset(const std::string& path, std::vector<hsize_t> dims, const T* data) {
    const hid_t file_type = std::is_same_v<T, float> ? H5T_IEEE_F32LE : H5T_IEEE_F64LE;
    const hid_t mem_type = std::is_same_v<T, float> ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    h5::write_dataset(file_.get(), path, dims, file_type, mem_type, data, what(path));
    std::size_t n = 1;
    for (auto d : dims) n *= d;
    datasets_[path] = bytes_of(data, n * sizeof(T));
  }

  template <class T>
  void attr(const std::string& obj, const std::string& name, const T& value) {
    h5::write_attribute(file_.get(), obj, name, value, what(name));
  }

  const std::map<std::string, std::string>& datasets() const { return datasets_; }
  /// The finished file's bytes.
  std::string image() {
    std::string bytes = h5::file_image(file_, what("file image"));
    file_.close(what("close"));
    return bytes;
  }

 private:
  std::string what(const std::string& part) const { return fmt::format("writing checkpoint '{}' ({})", path_, part); }

  std::string path_;
  h5::Handle file_;
  std::map<std::string, std::string> datasets_;
};


void write_contents(Writer& w, const Checkpoint& c) {
  const Layout layout(c.model);
  const ModelSpec& m = c.model;
  w.group("model");
  for (const Slot& s : layout.slots()) w.dataset("model/" + s.name, slot_dims(s), c.params.data() + s.offset);
  if (c.norm.enabled) {
    w.dataset("model/normalization/x_mean", {static_cast<hsize_t>(m.input_dim)}, c.norm.x_mean.data());
    w.dataset("model/normalization/x_std", {static_cast<hsize_t>(m.input_dim)}, c.norm.x_std.data());
    w.dataset("model/normalization/y_mean", {static_cast<hsize_t>(m.output_dim)}, c.norm.y_mean.data());
    w.dataset("model/normalization/y_std", {static_cast<hsize_t>(m.output_dim)}, c.norm.y_std.data());
  }
  w.group("optimizer");
  for (const auto& [name, buf] : c.optimizer_state) {
    for (const Slot& s : layout.slots()) w.dataset("optimizer/" + name + "/" + s.name, slot_dims(s), buf.data() + s.offset);
  }
  w.attr("/", "format", std::string(kFormat));
  w.attr("/", "format_version", std::int64_t{kCheckpointFormatVersion});
  w.attr("/", "step", c.step);
  w.attr("/", "epoch", c.epoch);
  w.attr("/", "samples_seen", c.samples_seen);
  w.attr("/", "world_size", c.world_size);
  w.attr("/", "config", c.config);
  w.attr("/", "best_valid_nll", c.best_valid_nll);
  w.attr("/", "cpu_level", c.cpu_level);
  w.attr("/", "permutation", c.permutation);
  w.attr("/", "train_files", train_files_text(c.train_files));
  w.attr("/model", "input_dim", std::int64_t{m.input_dim});
  w.attr("/model", "output_dim", std::int64_t{m.output_dim});
  w.attr("/model", "components", std::int64_t{m.components});
  w.attr("/model", "activation", std::string(to_string(m.activation)));
  w.attr("/model", "sigma", std::string(to_string(m.sigma)));
  w.attr("/model", "sigma_min", m.sigma_min);
  w.attr("/model", "covariance", std::string(to_string(m.covariance)));
  w.attr("/model", "hidden", std::vector<std::int64_t>(m.hidden.begin(), m.hidden.end()));
  w.attr("/optimizer", "name", std::string(to_string(c.optimizer)));
  w.attr("/optimizer", "step", c.optimizer_steps);
  w.attr("/", "checksum", checksum_of(w.datasets(), c, kCheckpointFormatVersion));
  w.attr("/", "checksum_algorithm", std::string(kChecksumAlgorithm));
}

}  // namespace

std::string checkpoint_name(const std::string& dir, std::int64_t step) {
  return fmt::format("{}/step-{:08d}.h5", dir, step);
}

void write_checkpoint(const std::string& path, const Checkpoint& c, const Faults& faults) {
  const Index n = Layout(c.model).size();
  if (c.params.size() != n) throw run_error("checkpoint '{}': {} parameters for a model of {}", path, c.params.size(), n);
  for (const auto& [name, buf] : c.optimizer_state)
    if (buf.size() != n) throw run_error("checkpoint '{}': optimizer state '{}' does not fit the model", path, name);
  // The file is built in memory, then written, synced and renamed (h5.hpp).
  std::string bytes;
  {
    Writer w(path);
    write_contents(w, c);
    bytes = w.image();
  }
  try {
    write_file_atomically(path, bytes, [&](WriteStage stage) { faults.at_checkpoint_stage(stage, c.step); });
  } catch (const Error& e) {
    throw run_error("writing checkpoint: {}", e.what());
  }
}

// ---- reading ------------------------------------------------------------------------------------

namespace {

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    h5::quiet();
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw input_error("checkpoint '{}': no such file", path);
    if (fs::is_directory(path, ec)) throw input_error("checkpoint '{}' is a directory, not a file", path);
    file_ = h5::open_file(path, fmt::format("checkpoint '{}' cannot be opened (truncated or not HDF5?)", path),
                          Exit::input);
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw input_error("checkpoint '{}': {}", path_, what);
  }

  bool has(const std::string& obj, const std::string& attr) const { return h5::attribute_exists(file_.get(), obj, attr); }

  /// Attribute `name` of `obj`, of type class `cls` and `points` elements (any: -1).
  h5::Handle open_attr(const std::string& obj, const std::string& name, H5T_class_t cls, hssize_t points) const {
    if (!has(obj, name)) fail(fmt::format("attribute '{}' of '{}' is missing", name, obj));
    const std::string what = fmt::format("checkpoint '{}': attribute '{}' of '{}' cannot be read", path_, name, obj);
    h5::Handle a = h5::open_attribute(file_.get(), obj, name, what, Exit::input);
    const h5::Shape shape = h5::attribute_shape(a, what, Exit::input);
    if (shape.type_class != cls) fail(fmt::format("attribute '{}' of '{}' has the wrong type", name, obj));
    if (points >= 0 && shape.points() != static_cast<hsize_t>(points))
      fail(fmt::format("attribute '{}' of '{}' has the wrong shape", name, obj));
    return a;
  }

  std::string str(const std::string& obj, const std::string& name) const {
    const h5::Handle a = open_attr(obj, name, H5T_STRING, 1);
    return h5::read_string(a, fmt::format("checkpoint '{}': attribute '{}' cannot be read", path_, name), Exit::input);
  }

  std::int64_t i64(const std::string& obj, const std::string& name) const {
    std::int64_t v = 0;
    h5::read_attribute(open_attr(obj, name, H5T_INTEGER, 1), H5T_NATIVE_INT64, &v, cannot_read(name), Exit::input);
    return v;
  }

  double f64(const std::string& obj, const std::string& name) const {
    double v = 0;
    h5::read_attribute(open_attr(obj, name, H5T_FLOAT, 1), H5T_NATIVE_DOUBLE, &v, cannot_read(name), Exit::input);
    return v;
  }

  std::vector<std::int64_t> i64s(const std::string& obj, const std::string& name) const {
    const h5::Handle a = open_attr(obj, name, H5T_INTEGER, -1);
    const hsize_t n = h5::attribute_shape(a, cannot_read(name), Exit::input).points();
    if (n > 1024) fail(fmt::format("attribute '{}' has an implausible length", name));
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    if (n > 0) h5::read_attribute(a, H5T_NATIVE_INT64, v.data(), cannot_read(name), Exit::input);
    return v;
  }

  bool exists(const std::string& path) const { return h5::link_exists(file_.get(), path); }

  /// Reads dataset `path` of exactly `dims` into out (float or double, converted by HDF5).
  template <class T>
  void dataset(const std::string& path, const std::vector<hsize_t>& dims, T* out) const {
    if (!exists(path)) fail(fmt::format("dataset '{}' is missing", path));
    const std::string opened = fmt::format("checkpoint '{}': dataset '{}' cannot be opened (corrupt file?)", path_, path);
    const h5::Handle ds = h5::open_dataset(file_.get(), path, opened, Exit::input);
    const h5::Shape shape = h5::dataset_shape(ds, opened, Exit::input);
    if (shape.type_class != H5T_FLOAT) fail(fmt::format("dataset '{}' is not floating point", path));
    if (shape.dims != dims) {
      std::string want, have;
      for (auto d : dims) want += (want.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : shape.dims) have += (have.empty() ? "" : ", ") + std::to_string(d);
      fail(fmt::format("dataset '{}' has shape ({}), the model needs ({})", path, have, want));
    }
    h5::read_dataset(ds, std::is_same_v<T, float> ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE, out,
                     fmt::format("checkpoint '{}': dataset '{}' cannot be read (corrupt or truncated?)", path_, path),
                     Exit::input);
  }

  /// Raw bytes of every dataset, by path, for the checksum; a dataset larger than
  /// `max_bytes` is refused before it is read (a hostile file cannot make mdn allocate it).
  std::map<std::string, std::string> all_datasets(double max_bytes) const {
    const std::vector<std::string> paths =
        h5::dataset_paths(file_.get(), true, fmt::format("checkpoint '{}': its datasets cannot be listed", path_), Exit::input);
    std::map<std::string, std::string> out;
    for (const auto& p : paths) {
      const std::string what = fmt::format("checkpoint '{}': dataset '{}' cannot be read (corrupt or truncated?)", path_, p);
      const h5::Handle ds = h5::open_dataset(file_.get(), p, what, Exit::input);
      const h5::Shape shape = h5::dataset_shape(ds, what, Exit::input);
      if (static_cast<double>(shape.points()) * static_cast<double>(shape.element_bytes) > max_bytes)
        fail(fmt::format("dataset '{}' is larger than any dataset of this model's checkpoint", p));
      // The file's own type, byte for byte: a copy of the stored bytes.
      std::string bytes(static_cast<std::size_t>(shape.points()) * shape.element_bytes, '\0');
      if (!bytes.empty()) h5::read_dataset(ds, h5::stored_type(ds, what, Exit::input).get(), bytes.data(), what, Exit::input);
      out[p] = std::move(bytes);
    }
    return out;
  }

  std::string cannot_read(const std::string& name) const {
    return fmt::format("checkpoint '{}': attribute '{}' cannot be read", path_, name);
  }

 private:
  std::string path_;
  h5::Handle file_;
};

template <class E>
E parse_enum(const Reader& r, const std::string& value, const std::string& what) {
  if (const auto e = from_name<E>(value)) return *e;
  r.fail(fmt::format("{} '{}' is not one this mdn knows", what, value));
}

}  // namespace

namespace {

/// The root's attributes: format, version, counters, the stored config's text.
void read_header(const Reader& r, Checkpoint& c) {
  if (!r.has("/", "format") || r.str("/", "format") != kFormat) r.fail("not an mdn checkpoint (no format attribute 'mdn-checkpoint')");
  const std::int64_t version = r.i64("/", "format_version");
  if (version < 1 || version > kCheckpointFormatVersion)
    r.fail(fmt::format("format version {}; this mdn reads versions 1 to {}", version, kCheckpointFormatVersion));
  c.format_version = version;
  if (version >= 2) c.cpu_level = r.str("/", "cpu_level");
  c.permutation = "fisher-yates";  // versions 1 and 2
  if (version >= 3) {
    c.permutation = r.str("/", "permutation");
    std::istringstream lines(r.str("/", "train_files"));
    std::string line;
    while (std::getline(lines, line)) {
      const auto space = line.find(' ');
      std::int64_t rows = -1;
      try {
        if (space != std::string::npos) rows = std::stoll(line.substr(0, space));
      } catch (const std::exception&) {
      }
      if (rows < 0) r.fail(fmt::format("attribute train_files: a line is not '<rows> <path>': '{}'", line));
      c.train_files.emplace_back(line.substr(space + 1), rows);
    }
  }
  c.step = r.i64("/", "step");
  c.epoch = r.i64("/", "epoch");
  c.samples_seen = r.i64("/", "samples_seen");
  c.world_size = r.i64("/", "world_size");
  c.config = r.str("/", "config");
  c.best_valid_nll = r.f64("/", "best_valid_nll");
  if (c.step < 0 || c.epoch < 0 || c.samples_seen < 0 || c.world_size < 1) r.fail("negative counters");
}

/// /model's attributes, every value range-checked before anything is sized by it.
ModelSpec read_model_spec(const Reader& r, std::int64_t version) {
  ModelSpec m;
  const auto dim = [&](const char* name, std::int64_t hi) {
    const std::int64_t v = r.i64("/model", name);
    if (v < 1 || v > hi) r.fail(fmt::format("/model attribute {} = {} is out of range", name, v));
    return static_cast<int>(v);
  };
  m.input_dim = dim("input_dim", 1 << 20);
  m.output_dim = dim("output_dim", 1 << 20);
  m.components = dim("components", 4096);
  for (std::int64_t w : r.i64s("/model", "hidden")) {
    if (w < 1 || w > (1 << 20)) r.fail(fmt::format("/model hidden width {} is out of range", w));
    m.hidden.push_back(static_cast<int>(w));
  }
  m.activation = parse_enum<Activation>(r, r.str("/model", "activation"), "activation");
  m.sigma = parse_enum<SigmaMode>(r, r.str("/model", "sigma"), "sigma");
  m.sigma_min = r.f64("/model", "sigma_min");
  if (!(m.sigma_min > 0) || !std::isfinite(m.sigma_min)) r.fail("sigma_min must be positive");
  // Versions 1 to 3 knew only diagonal components.
  if (version >= 4) m.covariance = parse_enum<Covariance>(r, r.str("/model", "covariance"), "covariance");
  return m;
}

/// The normalisation statistics (identity when the run did not normalise).
Normalization read_normalization(const Reader& r, const ModelSpec& m) {
  Normalization norm = Normalization::identity(m.input_dim, m.output_dim);
  if (!r.exists("model/normalization")) return norm;
  norm.enabled = true;
  r.dataset("model/normalization/x_mean", {static_cast<hsize_t>(m.input_dim)}, norm.x_mean.data());
  r.dataset("model/normalization/x_std", {static_cast<hsize_t>(m.input_dim)}, norm.x_std.data());
  r.dataset("model/normalization/y_mean", {static_cast<hsize_t>(m.output_dim)}, norm.y_mean.data());
  r.dataset("model/normalization/y_std", {static_cast<hsize_t>(m.output_dim)}, norm.y_std.data());
  if (!(norm.x_std.array() > 0).all() || !(norm.y_std.array() > 0).all()) r.fail("normalisation std must be positive");
  return norm;
}

/// What eval, predict and sample take from the stored config. The stored config is part of what
/// a checkpoint holds: one that cannot be read makes the file unusable like a corrupt one
/// (`resume: auto` skips it; named explicitly, it is exit 2).
void read_stored_config(const Reader& r, Checkpoint& c) {
  try {
    const Config run = parse_config(c.config, "stored config");
    c.micro_batch = *run.train.micro_batch;
    c.data_x = run.data.x;
    c.data_y = run.data.y;
  } catch (const Error& e) {
    r.fail(fmt::format("its stored config cannot be read: {}", e.what()));
  }
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path, ChecksumStatus* status) {
  Reader r(path);
  Checkpoint c;
  read_header(r, c);
  c.model = read_model_spec(r, c.format_version);
  const ModelSpec& m = c.model;
  const Layout layout(m);
  if (static_cast<double>(layout.size()) > 4e9) r.fail("the model it describes is implausibly large");
  c.params.resize(layout.size());
  auto read_slots = [&](const std::string& prefix, float* buf) {
    for (const Slot& s : layout.slots()) r.dataset(prefix + s.name, slot_dims(s), buf + s.offset);
  };
  read_slots("model/", c.params.data());
  c.norm = read_normalization(r, m);

  c.optimizer = parse_enum<OptimizerKind>(r, r.str("/optimizer", "name"), "optimizer");
  c.optimizer_steps = r.i64("/optimizer", "step");
  for (const std::string& name : state_names(c.optimizer, r.exists("optimizer/momentum"))) {
    Vec<float> buf(layout.size());
    read_slots("optimizer/" + name + "/", buf.data());
    c.optimizer_state.emplace_back(name, std::move(buf));
  }

  const std::string stored = r.str("/", "checksum");
  // No dataset of this checkpoint is larger than the parameters plus their normalisation.
  const double largest = 8.0 * static_cast<double>(layout.size() + m.input_dim + m.output_dim) + 4096;
  const std::string computed = checksum_of(r.all_datasets(largest), c, c.format_version);
  if (status != nullptr) {
    *status = {stored, computed};
  } else if (stored != computed) {
    r.fail(fmt::format("checksum mismatch (stored {}, computed {}): the file is corrupt", stored, computed));
  }
  if (!c.params.allFinite()) r.fail("holds non-finite parameters");
  read_stored_config(r, c);
  return c;
}

std::string checkpoint_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

std::vector<std::pair<std::int64_t, std::string>> step_checkpoints(const std::string& dir) {
  static const std::regex pattern(R"(step-(\d{8,})\.h5)");
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::smatch m;
    if (std::regex_match(name, m, pattern) && it->is_regular_file(ec))
      found.emplace_back(std::stoll(m[1].str()), it->path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}


}  // namespace mdn
