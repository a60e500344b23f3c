#include "mdn/prepare.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "mdn/error.hpp"
#include "mdn/exact.hpp"

namespace mdn {

namespace {

std::string key_origin(const Config& c, const std::string& key) {
  const std::string w = c.where(key);
  return w.empty() ? key : w + key;
}

std::string shape(const DatasetInfo& d) {
  return d.rank == 1 ? fmt::format("({},)", d.rows) : fmt::format("({}, {})", d.rows, d.cols);
}

std::string describe(const DataFileInfo& f) {
  return fmt::format("{}\n    x '{}': float{} {} {}\n    y '{}': float{} {} {}", f.path, f.x.name,
                     8 * f.x.bytes, shape(f.x), f.x.storage, f.y.name, 8 * f.y.bytes, shape(f.y),
                     f.y.storage);
}

std::string describe(const DataSet& d) {
  if (d.files.size() == 1) return describe(d.files.front());
  std::string s = fmt::format("{} files, {} rows", d.files.size(), d.rows);
  for (std::size_t f = 0; f < d.files.size(); ++f)
    s += fmt::format("\n  rows {}..{}: {}", d.first[f], d.first[f] + d.files[f].x.rows, describe(d.files[f]));
  return s;
}

std::string list_text(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ", ") + ("'" + e + "'");
  return s;
}

std::string vec(const Eigen::VectorXd& v) {
  std::string s = "[";
  for (Index i = 0; i < v.size(); ++i) s += fmt::format("{}{:.6g}", i ? ", " : "", v(i));
  return s + "]";
}

}  // namespace

Config load_config_collectively(const std::string& path, const std::vector<std::string>& sets,
                                Comm& comm) {
  std::string text;
  comm.collectively([&] {
    if (!comm.is_root()) return;
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw input_error("{}: is a directory, not a config file", path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw input_error("{}: cannot read the config file: {}", path, std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  });
  comm.broadcast(text);
  Config c;
  comm.collectively([&] { c = parse_config(text, path, sets); });
  comm.set_timeout(c.comm.timeout_seconds.value_or(0.0));
  return c;
}

MemoryEstimate estimate_memory(const Prepared& p, int P) {
  MemoryEstimate e;
  const BatchSpec& b = p.batches;
  const double W = static_cast<double>(p.model.input_dim + p.model.output_dim);
  const double rows = static_cast<double>((b.rows + P - 1) / P);
  const Index G = b.micro_batches_per_epoch();
  e.shard = rows * W * 4;
  e.epoch = static_cast<double>((G + P - 1) / P * b.micro) * W * 4;
  e.exchange = P > 1 ? 2.0 * (8 << 20) : 0.0;
  bool wide = false;
  for (const auto& f : p.train_data.files) wide |= f.x.bytes == 8 || f.y.bytes == 8;
  e.reading = (wide ? 4.0 * (1 << 20) : 0.0) + W * 2 * ExactMoments::kBuckets * 16;
  if (p.valid_data) e.valid = static_cast<double>((p.valid_data->rows + P - 1) / P + b.micro) * W * 4;
  e.model = 48.0 * static_cast<double>(Layout(p.model).size());
  double widths = 0;
  for (int w : p.model.hidden) widths += w;
  e.activations = 2.0 * static_cast<double>(b.micro) * (W + 3 * widths + 3 * static_cast<double>(p.model.head_rows())) * 4;
  return e;
}

void check_run_dir(const Config& c) {
  namespace fs = std::filesystem;
  const std::string what = key_origin(c, "run.dir");
  fs::path dir(c.run.dir);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw input_error("{}: '{}' exists and is not a directory", what, c.run.dir);
    if (access(dir.c_str(), W_OK | X_OK) != 0)
      throw input_error("{}: '{}' is not writable: {}", what, c.run.dir, std::strerror(errno));
    return;
  }
  // The nearest existing ancestor must be a writable directory.
  fs::path p = fs::absolute(dir, ec).parent_path();
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty() || !fs::is_directory(p, ec))
    throw input_error("{}: cannot create '{}': '{}' is not a directory", what, c.run.dir, p.string());
  if (access(p.c_str(), W_OK | X_OK) != 0)
    throw input_error("{}: cannot create '{}': '{}' is not writable", what, c.run.dir, p.string());
}

Prepared prepare(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm) {
  Prepared p;
  p.config = load_config_collectively(config_path, sets, comm);
  const Config& c = p.config;

  // Headers first, on every rank (they see the same files): cheap, and all errors are settled.
  comm.collectively([&] {
    const std::string x_origin = key_origin(c, "data.x"), y_origin = key_origin(c, "data.y");
    p.train_data = inspect_dataset(c.data.train, c.data.x, c.data.y, key_origin(c, "data.train"), x_origin, y_origin);
    if (c.data.valid) {
      p.valid_data = inspect_dataset(*c.data.valid, c.data.x, c.data.y, key_origin(c, "data.valid"), x_origin, y_origin);
      const DataFileInfo& v = p.valid_data->files.front();
      const DataFileInfo& t = p.train_data.files.front();
      if (v.x.cols != t.x.cols || v.y.cols != t.y.cols)
        throw input_error("{}: '{}' has {} inputs and {} outputs, the training file '{}' has {} and {}",
                          key_origin(c, "data.valid"), v.path, v.x.cols, v.y.cols, t.path, t.x.cols, t.y.cols);
    }
    check_run_dir(c);
  });
  const Index N = p.train_data.rows;
  if (N < comm.size())
    throw Error(Exit::input,
                fmt::format("{}: {} has {} rows: too few for {} ranks (use at most {} ranks)",
                            key_origin(c, "data.train"), list_text(c.data.train), N, comm.size(), N),
                true);
  const int D = static_cast<int>(p.train_data.x_cols());
  const int L = static_cast<int>(p.train_data.y_cols());
  p.model = c.model_spec(D, L);
  comm.collectively([&] { p.model.validate(); });
  p.batches = {N, c.train.batch_size, *c.train.micro_batch, c.train.drop_last, c.run.seed};
  if (p.batches.batches_per_epoch() == 0)
    throw Error(Exit::input,
                fmt::format("{}train.drop_last is on and train.batch_size ({}) exceeds the {} training rows: "
                            "an epoch would have no batch",
                            c.where("train.drop_last"), c.train.batch_size, N),
                true);

  p.memory = estimate_memory(p, comm.size());
  return p;
}

void read_data(Prepared& p, const Continuation& from, Comm& comm) {
  const Config& c = p.config;
  const auto start = std::chrono::steady_clock::now();
  p.cpu = choose_cpu_level(c.run.cpu, c.where("run.cpu") + "run.cpu", from.cpu, from.resuming, comm);

  // Data: this rank's shard; normalisation statistics from the training rows (exact).
  const Index N = p.train_data.rows;
  const int D = static_cast<int>(p.train_data.x_cols());
  const int L = static_cast<int>(p.train_data.y_cols());
  p.train_range = shard_of(N, comm.size(), comm.rank());
  if (from.norm) {
    p.norm = *from.norm;
    p.train_shard = read_shard(p.train_data, p.train_range, comm, &p.norm, nullptr, &p.train_read);
  } else {
    p.train_shard = read_shard(p.train_data, p.train_range, comm, nullptr,
                               c.data.normalize ? &p.norm : nullptr, &p.train_read);
    if (!c.data.normalize) p.norm = Normalization::identity(D, L);
  }
  if (p.valid_data) {
    p.valid_range = block_shard_of(p.valid_data->rows, p.batches.micro, comm.size(), comm.rank());
    p.valid_shard = read_shard(*p.valid_data, p.valid_range, comm, &p.norm, nullptr);
  }
  p.read_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::int64_t total_steps(const Config& c, const BatchSpec& b) {
  std::int64_t steps = c.train.epochs ? *c.train.epochs * b.batches_per_epoch() : std::numeric_limits<std::int64_t>::max();
  if (c.train.max_steps) steps = std::min(steps, *c.train.max_steps);
  return steps;
}

std::string summary(const Prepared& p, Comm& comm) {
  const Config& c = p.config;
  const Index rows = p.train_range.size();
  const Index min_rows = comm.min<std::int64_t>(rows);
  const Index max_rows = comm.max<std::int64_t>(rows);
  const BatchSpec& b = p.batches;
  const Layout layout(p.model);
  std::string hidden;
  for (int w : p.model.hidden) hidden += (hidden.empty() ? "" : ", ") + std::to_string(w);
  const Index G = b.micro_batches_per_epoch();
  const Index last = b.batch_rows(b.batches_per_epoch() - 1);
  std::string s;
  const auto overrides = std::count_if(c.origin.begin(), c.origin.end(),
                                       [](const auto& kv) { return kv.second.rfind("--set", 0) == 0; });
  s += fmt::format("config     {}{}\n", c.path,
                   overrides > 0 ? fmt::format(" ({} keys set with --set)", overrides) : "");
  s += fmt::format("train      {}\n", describe(p.train_data));
  if (p.valid_data) s += fmt::format("valid      {}\n", describe(*p.valid_data));
  s += fmt::format("data       N = {} rows, D = {} inputs, L = {} outputs\n", b.rows,
                   p.model.input_dim, p.model.output_dim);
  s += fmt::format("model      {} -> [{}] {} -> K = {} components ({} head outputs); {} parameters\n",
                   p.model.input_dim, hidden, to_string(p.model.activation), p.model.components,
                   p.model.head_rows(), layout.size());
  s += fmt::format("batches    B = {}, m = {}: {} batches per epoch ({} micro-batches); last batch {} rows{}\n",
                   b.batch, b.micro, b.batches_per_epoch(), G, last,
                   b.rows_per_epoch() < b.rows ? fmt::format(" ({} rows dropped)", b.rows - b.rows_per_epoch()) : "");
  if (c.train.epochs || c.train.max_steps) {
    s += fmt::format("schedule   {} steps ({} epochs of {} steps{})\n", total_steps(c, b),
                     c.train.epochs ? std::to_string(*c.train.epochs) : "-", b.batches_per_epoch(),
                     c.train.max_steps ? fmt::format(", max_steps {}", *c.train.max_steps) : "");
  }
  const Index P = comm.size();
  s += fmt::format("ranks      P = {}: each reads {} rows (its shard) and holds at most {} rows of an epoch\n",
                   P, min_rows == max_rows ? std::to_string(min_rows) : fmt::format("{}..{}", min_rows, max_rows),
                   (G + P - 1) / P * b.micro);
  const MemoryEstimate& mem = p.memory;
  constexpr double MiB = 1 << 20;
  s += fmt::format("memory     about {:.0f} MiB per rank at peak: data {:.0f} (shard {:.0f}, epoch {:.0f}, exchange {:.0f}, "
                   "reading {:.0f}, validation {:.0f}), model {:.0f}, step {:.0f}, process {:.0f}\n",
                   mem.total_mib(), (mem.shard + mem.epoch + mem.exchange + mem.reading + mem.valid) / MiB,
                   mem.shard / MiB, mem.epoch / MiB, mem.exchange / MiB, mem.reading / MiB, mem.valid / MiB,
                   mem.model / MiB, mem.activations / MiB, mem.process / MiB);
  if (G < P)
    s += fmt::format("           note: {} micro-batches per epoch for {} ranks: some ranks idle\n", G, P);
  if (p.norm.enabled) {
    s += fmt::format("normalize  x mean {} std {}\n           y mean {} std {}\n", vec(p.norm.x_mean),
                     vec(p.norm.x_std), vec(p.norm.y_mean), vec(p.norm.y_std));
  } else {
    s += "normalize  off\n";
  }
  s += fmt::format("cpu        {}; built: {}\n", p.cpu.describe(comm.size()), built_level_list());
  s += fmt::format("run.dir    {}\n", c.run.dir);
  return s;
}

}  // namespace mdn
