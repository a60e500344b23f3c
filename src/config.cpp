#include "mdn/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "mdn/error.hpp"

namespace mdn {

namespace {

using Node = YAML::Node;
constexpr std::int64_t kIntMax = std::numeric_limits<std::int64_t>::max();

// ---- scalar conversions: each throws std::invalid_argument with the problem --------------------

std::string scalar_text(const Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "null";
}

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

std::int64_t to_int(const Node& n) {
  std::int64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<std::int64_t>::decode(n, v))
    bad(fmt::format("expected an integer, got {}", n.IsScalar() ? "'" + n.Scalar() + "'" : scalar_text(n)));
  return v;
}

double to_real(const Node& n) {
  double v = 0;
  if (!n.IsScalar() || !YAML::convert<double>::decode(n, v))
    bad(fmt::format("expected a number, got {}", n.IsScalar() ? "'" + n.Scalar() + "'" : scalar_text(n)));
  if (!std::isfinite(v)) bad(fmt::format("expected a finite number, got '{}'", n.Scalar()));
  return v;
}

bool to_bool(const Node& n) {
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
    bad(fmt::format("expected true or false, got {}", n.IsScalar() ? "'" + n.Scalar() + "'" : scalar_text(n)));
  return v;
}

std::string to_text(const Node& n) {
  if (!n.IsScalar()) bad(fmt::format("expected a string, got {}", scalar_text(n)));
  return n.Scalar();
}

bool is_null(const Node& n) { return !n.IsDefined() || n.IsNull(); }

std::string fmt_real(double v) { return fmt::format("{}", v); }

std::string quote(const std::string& s) {
  YAML::Emitter e;
  e << s;
  return e.c_str();
}

// ---- key builders ------------------------------------------------------------------------------

template <class T>
using Field = std::function<T&(Config&)>;

std::string int_range(std::int64_t lo, std::int64_t hi) {
  if (hi == kIntMax) return fmt::format(">= {}", lo);
  return fmt::format("{} .. {}", lo, hi);
}

void check_int(std::int64_t v, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi) bad(fmt::format("must be {}, got {}", int_range(lo, hi), v));
}

KeySpec integer(std::string key, Field<std::int64_t> f, std::int64_t lo, std::int64_t hi,
                std::string doc) {
  return {key, "integer", int_range(lo, hi), std::move(doc),
          [=](Config& c, const Node& n) {
            const auto v = to_int(n);
            check_int(v, lo, hi);
            f(c) = v;
          },
          [=](const Config& c) { return std::to_string(f(const_cast<Config&>(c))); }};
}

KeySpec optional_integer(std::string key, Field<std::optional<std::int64_t>> f, std::int64_t lo,
                         std::string doc) {
  return {key, "integer or null", int_range(lo, kIntMax), std::move(doc),
          [=](Config& c, const Node& n) {
            if (is_null(n)) {
              f(c).reset();
              return;
            }
            const auto v = to_int(n);
            check_int(v, lo, kIntMax);
            f(c) = v;
          },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return v ? std::to_string(*v) : std::string("null");
          }};
}

constexpr double kInf = std::numeric_limits<double>::infinity();

struct RealRange {
  double lo;
  double hi;
  bool lo_open;
  bool hi_open;
  std::string text() const {
    if (hi == kInf)
      return fmt::format("{} {}", lo_open ? ">" : ">=", fmt_real(lo));
    return fmt::format("{}{}, {}{}", lo_open ? "(" : "[", fmt_real(lo), fmt_real(hi), hi_open ? ")" : "]");
  }
  void check(double v) const {
    const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) bad(fmt::format("must be {}{}, got {}", hi == kInf ? "" : "in ", text(), fmt_real(v)));
  }
};
const RealRange kPositive{0, kInf, true, false};
const RealRange kNonNegative{0, kInf, false, false};

KeySpec real(std::string key, Field<double> f, RealRange r, std::string doc) {
  return {key, "number", r.text(), std::move(doc),
          [=](Config& c, const Node& n) {
            const double v = to_real(n);
            r.check(v);
            f(c) = v;
          },
          [=](const Config& c) { return fmt_real(f(const_cast<Config&>(c))); }};
}

KeySpec optional_real(std::string key, Field<std::optional<double>> f, RealRange r, std::string doc) {
  return {key, "number or null", r.text(), std::move(doc),
          [=](Config& c, const Node& n) {
            if (is_null(n)) {
              f(c).reset();
              return;
            }
            const double v = to_real(n);
            r.check(v);
            f(c) = v;
          },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return v ? fmt_real(*v) : std::string("null");
          }};
}

KeySpec boolean(std::string key, Field<bool> f, std::string doc) {
  return {key, "boolean", "true | false", std::move(doc),
          [=](Config& c, const Node& n) { f(c) = to_bool(n); },
          [=](const Config& c) { return std::string(f(const_cast<Config&>(c)) ? "true" : "false"); }};
}

KeySpec text(std::string key, Field<std::string> f, bool required, std::string doc) {
  return {key, "string", required ? "required, non-empty" : "non-empty", std::move(doc),
          [=](Config& c, const Node& n) {
            auto v = to_text(n);
            if (v.empty()) bad("must not be empty");
            f(c) = std::move(v);
          },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return v.empty() ? std::string("null") : quote(v);
          }};
}

/// A file list: one path or pattern, or a list of them.
std::vector<std::string> to_file_list(const Node& n) {
  std::vector<std::string> v;
  if (n.IsSequence()) {
    if (n.size() == 0) bad("must name at least one file");
    for (std::size_t i = 0; i < n.size(); ++i) {
      std::string e;
      try {
        e = to_text(n[i]);
      } catch (const std::invalid_argument& err) {
        bad(fmt::format("element {}: {}", i, err.what()));
      }
      if (e.empty()) bad(fmt::format("element {}: must not be empty", i));
      v.push_back(std::move(e));
    }
    return v;
  }
  auto e = to_text(n);
  if (e.empty()) bad("must not be empty");
  v.push_back(std::move(e));
  return v;
}

std::string file_list_text(const std::vector<std::string>& v) {
  if (v.size() == 1) return quote(v.front());
  YAML::Emitter e;  // quotes what a flow sequence cannot hold plain ("part-[ab].h5")
  e << YAML::Flow << YAML::BeginSeq;
  for (const auto& f : v) e << f;
  e << YAML::EndSeq;
  return e.c_str();
}

KeySpec files(std::string key, Field<std::vector<std::string>> f, std::string doc) {
  return {key, "string or list of strings", "required; paths and glob patterns", std::move(doc),
          [=](Config& c, const Node& n) { f(c) = to_file_list(n); },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return v.empty() ? std::string("null") : file_list_text(v);
          }};
}

KeySpec optional_files(std::string key, Field<std::optional<std::vector<std::string>>> f, std::string doc) {
  return {key, "string, list of strings or null", "paths and glob patterns", std::move(doc),
          [=](Config& c, const Node& n) {
            if (is_null(n)) {
              f(c).reset();
              return;
            }
            f(c) = to_file_list(n);
          },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return v ? file_list_text(*v) : std::string("null");
          }};
}

template <class E>
KeySpec choice(std::string key, Field<E> f, std::string doc) {
  const std::string names = names_of<E>();
  return {key, "string", names, std::move(doc),
          [=](Config& c, const Node& n) {
            const auto v = to_text(n);
            if (const auto e = from_name<E>(v)) f(c) = *e;
            else bad(fmt::format("must be one of {}, got '{}'", names, v));
          },
          [=](const Config& c) { return std::string(to_string(f(const_cast<Config&>(c)))); }};
}

KeySpec int_list(std::string key, Field<std::vector<int>> f, std::string doc) {
  return {key, "list of integers", "each 1 .. 1048576; [] for no hidden layer", std::move(doc),
          [=](Config& c, const Node& n) {
            if (!n.IsSequence()) bad(fmt::format("expected a list such as [64, 64], got {}", scalar_text(n)));
            std::vector<int> v;
            for (std::size_t i = 0; i < n.size(); ++i) {
              std::int64_t w = 0;
              try {
                w = to_int(n[i]);
                check_int(w, 1, 1 << 20);
              } catch (const std::invalid_argument& e) {
                bad(fmt::format("element {}: {}", i, e.what()));
              }
              v.push_back(static_cast<int>(w));
            }
            f(c) = std::move(v);
          },
          [=](const Config& c) {
            std::string s = "[";
            for (int w : f(const_cast<Config&>(c))) s += (s.size() > 1 ? ", " : "") + std::to_string(w);
            return s + "]";
          }};
}

KeySpec real_pair(std::string key, Field<std::array<double, 2>> f, RealRange r, std::string doc) {
  return {key, "list of 2 numbers", "each in " + r.text(), std::move(doc),
          [=](Config& c, const Node& n) {
            if (!n.IsSequence() || n.size() != 2)
              bad(fmt::format("expected a list of 2 numbers such as [0.9, 0.999], got {}",
                              n.IsSequence() ? fmt::format("{} elements", n.size()) : scalar_text(n)));
            std::array<double, 2> v{};
            for (std::size_t i = 0; i < 2; ++i) {
              try {
                v[i] = to_real(n[i]);
                r.check(v[i]);
              } catch (const std::invalid_argument& e) {
                bad(fmt::format("element {}: {}", i, e.what()));
              }
            }
            f(c) = v;
          },
          [=](const Config& c) {
            const auto& v = f(const_cast<Config&>(c));
            return fmt::format("[{}, {}]", fmt_real(v[0]), fmt_real(v[1]));
          }};
}

// The key table: one entry per key, in the README's order. Long by nature (a table, not logic).
std::vector<KeySpec> build_keys() {
  std::vector<KeySpec> k;
  // run
  k.push_back(text("run.dir", [](Config& c) -> std::string& { return c.run.dir; }, true,
                   "Run directory: resolved config, metrics.jsonl, checkpoints/. Created if missing."));
  k.push_back({"run.seed", "integer", ">= 0",
               "Seed of the initialisation and of every epoch's permutation.",
               [](Config& c, const Node& n) {
                 const auto v = to_int(n);
                 check_int(v, 0, kIntMax);
                 c.run.seed = static_cast<std::uint64_t>(v);
               },
               [](const Config& c) { return std::to_string(c.run.seed); }});
  k.push_back({"run.signals", "list of strings", "each USR1 | USR2 | TERM",
               "Signals that stop training at the next step boundary with a checkpoint and exit code 75 "
               "(SLURM's warning before the time limit; USR1 is the reliable one under mpirun).",
               [](Config& c, const Node& n) {
                 if (!n.IsSequence()) bad(fmt::format("expected a list such as [USR1, TERM], got {}", scalar_text(n)));
                 std::vector<std::string> v;
                 for (std::size_t i = 0; i < n.size(); ++i) {
                   const std::string s = to_text(n[i]);
                   if (s != "USR1" && s != "USR2" && s != "TERM")
                     bad(fmt::format("element {}: must be USR1, USR2 or TERM, got '{}'", i, s));
                   v.push_back(s);
                 }
                 c.run.signals = std::move(v);
               },
               [](const Config& c) {
                 std::string s = "[";
                 for (const auto& v : c.run.signals) s += (s.size() > 1 ? ", " : "") + v;
                 return s + "]";
               }});
  k.push_back({"run.cpu", "string", "auto | " + cpu_level_names(),
               "Instruction-set level of the compute kernels, the same on every rank: auto takes the best level "
               "that every rank's CPU supports (when resuming, the checkpoint's level if every rank supports it); a "
               "level name forces it (an error if some rank's CPU lacks it). Results are bit-identical for the same "
               "binary and level on any CPU.",
               [](Config& c, const Node& n) {
                 const std::string v = to_text(n);
                 if (v == "auto") {
                   c.run.cpu.reset();
                   return;
                 }
                 const auto level = parse_cpu_level(v);
                 if (!level) bad(fmt::format("must be auto | {}, got '{}'", cpu_level_names(), v));
                 c.run.cpu = *level;
               },
               [](const Config& c) { return std::string(c.run.cpu ? to_string(*c.run.cpu) : "auto"); }});
  // data
  k.push_back(files("data.train", [](Config& c) -> std::vector<std::string>& { return c.data.train; },
                    "HDF5 file(s) with the training rows: a path, a glob pattern, or a list of them; the rows of "
                    "all files in order (a pattern's matches sorted), as if concatenated."));
  k.push_back(optional_files("data.valid", [](Config& c) -> std::optional<std::vector<std::string>>& { return c.data.valid; },
                             "HDF5 file(s) with validation rows, evaluated after every epoch, as data.train; null for none."));
  k.push_back(text("data.x", [](Config& c) -> std::string& { return c.data.x; }, false,
                   "Dataset of inputs, (N, D) or (N,), float32 or float64."));
  k.push_back(text("data.y", [](Config& c) -> std::string& { return c.data.y; }, false,
                   "Dataset of targets, (N, L) or (N,), float32 or float64."));
  k.push_back(boolean("data.normalize", [](Config& c) -> bool& { return c.data.normalize; },
                      "Standardise x and y per column with the training set's mean and std (stored "
                      "in checkpoints; reported NLLs stay in the data's units)."));
  // model
  k.push_back(int_list("model.hidden", [](Config& c) -> std::vector<int>& { return c.model.hidden; },
                       "Hidden layer widths."));
  k.push_back(choice<Activation>("model.activation", [](Config& c) -> Activation& { return c.model.activation; },
                                 "Hidden-layer activation."));
  k.push_back({"model.components", "integer", "1 .. 4096", "Mixture components K.",
               [](Config& c, const Node& n) {
                 const auto v = to_int(n);
                 check_int(v, 1, 4096);
                 c.model.components = static_cast<int>(v);
               },
               [](const Config& c) { return std::to_string(c.model.components); }});
  k.push_back(choice<SigmaMode>("model.sigma", [](Config& c) -> SigmaMode& { return c.model.sigma; },
                                "sigma = f(raw) + sigma_min with f = softplus or exp."));
  k.push_back(real("model.sigma_min", [](Config& c) -> double& { return c.model.sigma_min; }, kPositive,
                   "Floor of every sigma, in normalised units when data.normalize is on."));
  k.push_back(choice<Covariance>("model.covariance", [](Config& c) -> Covariance& { return c.model.covariance; },
                                 "Each component's covariance: diagonal (a sigma per output) or full (the "
                                 "Cholesky factor of its precision)."));
  // train
  k.push_back(optional_integer("train.epochs", [](Config& c) -> std::optional<std::int64_t>& { return c.train.epochs; }, 1,
                               "Epochs to train; training stops at epochs or max_steps, whichever comes first."));
  k.push_back(optional_integer("train.max_steps", [](Config& c) -> std::optional<std::int64_t>& { return c.train.max_steps; }, 1,
                               "Steps (global batches) to train; null for no limit."));
  k.push_back(integer("train.batch_size", [](Config& c) -> std::int64_t& { return c.train.batch_size; }, 1, kIntMax,
                      "Global batch B: rows per step over all ranks, independent of the rank count."));
  k.push_back(optional_integer("train.micro_batch", [](Config& c) -> std::optional<std::int64_t>& { return c.train.micro_batch; }, 1,
                               "Micro-batch m: rows per forward/backward pass; must divide batch_size. "
                               "Default: the largest divisor of batch_size not above 128."));
  k.push_back(boolean("train.drop_last", [](Config& c) -> bool& { return c.train.drop_last; },
                      "Drop the short last batch of each epoch instead of training on it."));
  k.push_back(choice<Reduction>("train.reduction", [](Config& c) -> Reduction& { return c.train.reduction; },
                                "exact: integer reduction, bit-identical for any rank count; fast: float allreduce."));
  k.push_back(choice<Nonfinite>("train.nonfinite", [](Config& c) -> Nonfinite& { return c.train.nonfinite; },
                                "A step with a non-finite loss or gradient: stop (checkpoint the last good "
                                "state, exit 1) or skip its update on every rank."));
  k.push_back(optional_integer("train.check_replicas_every",
                               [](Config& c) -> std::optional<std::int64_t>& { return c.train.check_replicas_every; }, 1,
                               "Every this many steps the ranks compare a hash of their parameters (one tiny "
                               "collective); a mismatch stops training with an error naming the ranks. null: off."));
  // optimizer
  k.push_back(choice<OptimizerKind>("optimizer.name", [](Config& c) -> OptimizerKind& { return c.optimizer.name; },
                                    "Optimizer, with torch.optim's conventions."));
  k.push_back(real("optimizer.lr", [](Config& c) -> double& { return c.optimizer.lr; }, kPositive,
                   "Base learning rate."));
  k.push_back(real("optimizer.momentum", [](Config& c) -> double& { return c.optimizer.momentum; },
                   RealRange{0, 1, false, true}, "sgd: momentum."));
  k.push_back(boolean("optimizer.nesterov", [](Config& c) -> bool& { return c.optimizer.nesterov; },
                      "sgd: Nesterov momentum (needs momentum > 0)."));
  k.push_back(real_pair("optimizer.betas", [](Config& c) -> std::array<double, 2>& { return c.optimizer.betas; },
                        RealRange{0, 1, false, true}, "adam, adamw: decay rates of the moment estimates."));
  k.push_back(real("optimizer.eps", [](Config& c) -> double& { return c.optimizer.eps; }, kPositive,
                   "adam, adamw: term added to the denominator."));
  k.push_back(real("optimizer.weight_decay", [](Config& c) -> double& { return c.optimizer.weight_decay; }, kNonNegative,
                   "Weight decay of weights (never biases): L2 for sgd and adam, decoupled for adamw."));
  k.push_back(choice<ScheduleKind>("optimizer.schedule.name", [](Config& c) -> ScheduleKind& { return c.optimizer.schedule.kind; },
                                   "Learning-rate schedule after the warmup."));
  k.push_back(integer("optimizer.schedule.warmup_steps", [](Config& c) -> std::int64_t& { return c.optimizer.schedule.warmup_steps; }, 0, kIntMax,
                      "Linear warmup over this many steps, in front of the schedule."));
  k.push_back(real("optimizer.schedule.min_lr", [](Config& c) -> double& { return c.optimizer.schedule.min_lr; }, kNonNegative,
                   "cosine: the learning rate at the end of the run."));
  k.push_back(integer("optimizer.schedule.step_size", [](Config& c) -> std::int64_t& { return c.optimizer.schedule.step_size; }, 1, kIntMax,
                      "step: steps between decays."));
  k.push_back(real("optimizer.schedule.gamma", [](Config& c) -> double& { return c.optimizer.schedule.gamma; },
                   RealRange{0, 1, true, false}, "step: decay factor."));
  // clip
  k.push_back(optional_real("clip.global_norm", [](Config& c) -> std::optional<double>& { return c.clip.global_norm; }, kPositive,
                            "Scale the gradient down to this global L2 norm; null: off."));
  k.push_back(optional_real("clip.value", [](Config& c) -> std::optional<double>& { return c.clip.value; }, kPositive,
                            "Clamp every gradient element to [-value, value] (before the norm clip); null: off."));
  // checkpoint
  k.push_back(optional_integer("checkpoint.every_steps", [](Config& c) -> std::optional<std::int64_t>& { return c.checkpoint.every_steps; }, 1,
                               "Checkpoint every this many steps; null: off."));
  k.push_back(optional_integer("checkpoint.every_epochs", [](Config& c) -> std::optional<std::int64_t>& { return c.checkpoint.every_epochs; }, 1,
                               "Checkpoint every this many epochs; null: off."));
  k.push_back(optional_real("checkpoint.every_seconds", [](Config& c) -> std::optional<double>& { return c.checkpoint.every_seconds; }, kPositive,
                            "Checkpoint when this much wall time has passed since the last one; null: off."));
  k.push_back(integer("checkpoint.keep_last", [](Config& c) -> std::int64_t& { return c.checkpoint.keep_last; }, 1, kIntMax,
                      "Step checkpoints kept; older ones are deleted."));
  k.push_back(boolean("checkpoint.keep_best", [](Config& c) -> bool& { return c.checkpoint.keep_best; },
                      "Keep best.h5, the checkpoint with the lowest validation NLL."));
  k.push_back({"checkpoint.resume", "string", "auto | never | a checkpoint path",
               "auto: continue from the newest valid checkpoint in run.dir, if any; never: refuse "
               "a run.dir that has checkpoints; a path: continue from that checkpoint.",
               [](Config& c, const Node& n) {
                 auto v = to_text(n);
                 if (v.empty()) bad("must be auto, never or a checkpoint path");
                 c.checkpoint.resume = std::move(v);
               },
               [](const Config& c) { return quote(c.checkpoint.resume); }});
  // log
  k.push_back(integer("log.every_steps", [](Config& c) -> std::int64_t& { return c.log.every_steps; }, 1, kIntMax,
                      "Progress line and metrics.jsonl record every this many steps (and at the last)."));
  // comm
  k.push_back(optional_real("comm.timeout_seconds", [](Config& c) -> std::optional<double>& { return c.comm.timeout_seconds; },
                            kPositive,
                            "Stall watchdog: a collective that makes no progress for this long ends the job with an "
                            "error naming the step and phase (must exceed the longest checkpoint write); null: wait forever."));
  k.push_back(boolean("comm.shared_memory", [](Config& c) -> bool& { return c.comm.shared_memory; },
                      "Exact reduction: ranks on one node add their integer sums in a shared-memory segment (POSIX shm); "
                      "false: through MPI's allreduce alone (the results are the same bits)."));
  return k;
}

const KeySpec* find_key(const std::string& key) {
  for (const auto& k : keys())
    if (k.key == key) return &k;
  return nullptr;
}

bool is_section(const std::string& prefix) {
  for (const auto& k : keys())
    if (k.key.size() > prefix.size() && k.key.compare(0, prefix.size(), prefix) == 0 &&
        k.key[prefix.size()] == '.')
      return true;
  return false;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string mark_text(const std::string& path, const YAML::Mark& m) {
  if (m.is_null()) return path;
  return fmt::format("{}:{}:{}", path, m.line + 1, m.column + 1);
}

std::string did_you_mean(const std::string& key) {
  const std::string s = suggest_key(key);
  return s.empty() ? std::string() : fmt::format("; did you mean '{}'?", s);
}

struct Parser {
  Config& config;
  const std::string& path;

  void apply(const std::string& key, const Node& value, const std::string& where) {
    const KeySpec* spec = find_key(key);
    try {
      spec->set(config, value);
    } catch (const std::invalid_argument& e) {
      throw input_error("{}: {}: {}", where, key, e.what());
    }
    config.origin[key] = where;
  }

  void walk(const Node& map, const std::string& prefix) {
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const Node k = it->first;
      const Node v = it->second;
      const std::string where = mark_text(path, k.Mark());
      if (!k.IsScalar()) throw input_error("{}: keys must be plain names", where);
      const std::string key = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
      if (!seen.insert(k.Scalar()).second) throw input_error("{}: duplicate key '{}'", where, key);
      if (find_key(key) != nullptr) {
        apply(key, v, mark_text(path, v.Mark().is_null() ? k.Mark() : v.Mark()));
      } else if (is_section(key)) {
        if (v.IsNull()) continue;  // an empty section: all defaults
        if (!v.IsMap())
          throw input_error("{}: '{}' is a section: expected a mapping of its keys, got {}", where, key,
                            scalar_text(v));
        walk(v, key);
      } else {
        throw input_error("{}: unknown key '{}'{}", where, key, did_you_mean(key));
      }
    }
  }
};

std::int64_t default_micro_batch(std::int64_t batch) {
  for (std::int64_t m = std::min<std::int64_t>(128, batch); m > 1; --m)
    if (batch % m == 0) return m;
  return 1;
}

void validate(Config& c) {
  auto at = [&](const std::string& key) { return c.where(key); };
  if (c.run.dir.empty()) throw input_error("{}: missing required key run.dir", c.path);
  if (c.data.train.empty()) throw input_error("{}: missing required key data.train", c.path);
  if (!c.train.epochs && !c.train.max_steps)
    throw input_error("{}: train.epochs or train.max_steps must be given", c.path);
  if (c.train.micro_batch) {
    if (c.train.batch_size % *c.train.micro_batch != 0)
      throw input_error("{}train.micro_batch ({}) must divide train.batch_size ({})",
                        at("train.micro_batch"), *c.train.micro_batch, c.train.batch_size);
  } else {
    c.train.micro_batch = default_micro_batch(c.train.batch_size);
  }
  if (c.optimizer.nesterov && c.optimizer.name == OptimizerKind::sgd && c.optimizer.momentum <= 0)
    throw input_error("{}optimizer.nesterov needs optimizer.momentum > 0", at("optimizer.nesterov"));
  if (c.optimizer.schedule.kind == ScheduleKind::cosine && c.optimizer.schedule.min_lr > c.optimizer.lr)
    throw input_error("{}optimizer.schedule.min_lr ({}) must not exceed optimizer.lr ({})",
                      at("optimizer.schedule.min_lr"), c.optimizer.schedule.min_lr, c.optimizer.lr);
}

}  // namespace

const std::vector<KeySpec>& keys() {
  static const std::vector<KeySpec> table = build_keys();
  return table;
}

std::string Config::where(const std::string& key) const {
  const auto it = origin.find(key);
  return it == origin.end() ? std::string() : it->second + ": ";
}

ModelSpec Config::model_spec(int input_dim, int output_dim) const {
  ModelSpec s;
  s.input_dim = input_dim;
  s.output_dim = output_dim;
  s.components = model.components;
  s.hidden = model.hidden;
  s.activation = model.activation;
  s.sigma = model.sigma;
  s.sigma_min = model.sigma_min;
  s.covariance = model.covariance;
  return s;
}

OptimizerSpec Config::optimizer_spec() const {
  OptimizerSpec s;
  s.kind = optimizer.name;
  s.momentum = optimizer.momentum;
  s.nesterov = optimizer.nesterov;
  s.beta1 = optimizer.betas[0];
  s.beta2 = optimizer.betas[1];
  s.eps = optimizer.eps;
  s.weight_decay = optimizer.weight_decay;
  return s;
}

ClipSpec Config::clip_spec() const { return {clip.value, clip.global_norm}; }

std::string suggest_key(const std::string& word) {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  const std::string leaf = word.substr(word.rfind('.') == std::string::npos ? 0 : word.rfind('.') + 1);
  // Candidates: every key and every section ("optimizer", "optimizer.schedule").
  std::vector<std::string> candidates;
  for (const auto& k : keys()) {
    candidates.push_back(k.key);
    for (auto dot = k.key.find('.'); dot != std::string::npos; dot = k.key.find('.', dot + 1))
      candidates.push_back(k.key.substr(0, dot));
  }
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(word, c);
    // A right leaf in the wrong section ("lr" for "optimizer.lr") is a good suggestion too.
    const std::string cleaf = c.substr(c.rfind('.') == std::string::npos ? 0 : c.rfind('.') + 1);
    if (cleaf == leaf && c != word) d = std::min<std::size_t>(d, 1);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best_d <= std::max<std::size_t>(2, word.size() / 4) ? best : std::string();
}

namespace {

/// yaml-cpp recurses once per nesting level and has open reports of stack overflows on deep
/// nesting: refuse implausible inputs before it parses them. A config is a few kilobytes and
/// three levels deep.
void check_plausible(const std::string& text, const std::string& path) {
  if (text.size() > (1u << 20)) throw input_error("{}: a config file larger than 1 MiB is not plausible", path);
  constexpr int kMaxDepth = 64;
  int flow = 0;  // open [ and { (over all lines, as flow collections may span lines)
  int line = 1;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t end = std::min(text.find('\n', i), text.size());
    int depth = 0;
    std::size_t j = i;
    while (j < end && (text[j] == ' ' || text[j] == '\t')) ++j;
    depth += static_cast<int>(j - i) / 2;  // block nesting needs indentation
    for (; j + 1 < end && (text[j] == '-' || text[j] == '?') && text[j + 1] == ' '; j += 2) {
      ++depth;  // "- - - x": nested block sequences on one line
      while (j + 2 < end && text[j + 2] == ' ') ++j;
    }
    bool quoted = false;
    char quote = 0;
    for (std::size_t k = i; k < end; ++k) {
      const char ch = text[k];
      if (quoted) {
        if (ch == quote) quoted = false;
        continue;
      }
      if (ch == '"' || ch == '\'') {
        quoted = true;
        quote = ch;
      } else if (ch == '#') {
        break;
      } else if (ch == '[' || ch == '{') {
        ++flow;
      } else if ((ch == ']' || ch == '}') && flow > 0) {
        --flow;
      }
      if (depth + flow > kMaxDepth)
        throw input_error("{}:{}: nested more than {} levels deep: not a plausible config", path, line, kMaxDepth);
    }
    if (depth + flow > kMaxDepth)
      throw input_error("{}:{}: nested more than {} levels deep: not a plausible config", path, line, kMaxDepth);
    i = end + 1;
    ++line;
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& path,
                    const std::vector<std::string>& overrides) {
  Config c;
  c.path = path;
  check_plausible(text, path);
  Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw input_error("{}: YAML syntax error: {}", mark_text(path, e.mark), e.msg);
  }
  if (!root.IsNull()) {
    if (!root.IsMap()) throw input_error("{}: expected a mapping of sections (run, data, model, ...)", path);
    Parser{c, path}.walk(root, "");
  }
  for (const std::string& o : overrides) {
    const std::string where = "--set " + o;
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw input_error("{}: expected KEY=VALUE, e.g. --set optimizer.lr=0.01", where);
    const std::string key = o.substr(0, eq);
    if (find_key(key) == nullptr && is_section(key)) {
      // `--set optimizer.schedule=cosine`: a section takes its keys one by one.
      std::string names;
      for (const auto& k : keys())
        if (k.key.compare(0, key.size() + 1, key + ".") == 0 && k.key.find('.', key.size() + 1) == std::string::npos)
          names += (names.empty() ? "" : ", ") + k.key;
      throw input_error("{}: '{}' is a section; --set takes one key at a time: {}", where, key, names);
    }
    if (find_key(key) == nullptr)
      throw input_error("{}: unknown key '{}'{}", where, key, did_you_mean(key));
    Node value;
    try {
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw input_error("{}: the value is not valid YAML: {}", where, e.msg);
    }
    Parser{c, path}.apply(key, value, where);
  }
  validate(c);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error("{}: cannot read the config file: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

std::string to_yaml(const Config& c) {
  std::string out;
  std::vector<std::string> open;  // sections currently open
  for (const auto& k : keys()) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t dot; (dot = k.key.find('.', start)) != std::string::npos; start = dot + 1)
      parts.push_back(k.key.substr(start, dot - start));
    const std::string leaf = k.key.substr(start);
    std::size_t common = 0;
    while (common < open.size() && common < parts.size() && open[common] == parts[common]) ++common;
    open.resize(common);
    for (std::size_t i = common; i < parts.size(); ++i) {
      out += std::string(2 * i, ' ') + parts[i] + ":\n";
      open.push_back(parts[i]);
    }
    out += std::string(2 * parts.size(), ' ') + leaf + ": " + k.get(c) + "\n";
  }
  return out;
}

namespace {

/// The default as people read it: required keys and computed defaults say so.
std::string default_text(const KeySpec& k) {
  static const Config defaults;
  if (k.key == "run.dir" || k.key == "data.train") return "(required)";
  if (k.key == "train.micro_batch") return "largest divisor of batch_size <= 128";
  return k.get(defaults);
}

}  // namespace

std::string keys_markdown() {
  std::string s = "| key | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n";
  for (const auto& k : keys())
    s += fmt::format("| `{}` | {} | `{}` | {} | {} |\n", k.key, k.type, default_text(k), k.range, k.doc);
  return s;
}

std::string keys_text() {
  std::string s;
  for (const auto& k : keys())
    s += fmt::format("{}  ({}, default {}; {})\n    {}\n", k.key, k.type, default_text(k), k.range, k.doc);
  return s;
}

}  // namespace mdn
