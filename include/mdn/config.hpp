// The run configuration: a YAML file plus `--set key=value` overrides, validated before any work.
//
// One table (config.cpp, `keys()`) lists every key with its type, default, allowed range and
// documentation. It drives parsing, `--set`, validation, the resolved config that a run writes,
// `mdn keys`, and the README's config reference (a test compares them). Every error names the
// key and where its value came from: "FILE:LINE:COL" for the YAML file, "--set KEY=VALUE" for an
// override.
#pragma once

#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mdn/clip.hpp"
#include "mdn/cpu.hpp"
#include "mdn/model.hpp"
#include "mdn/optimizer.hpp"
#include "mdn/reduction.hpp"
#include "mdn/schedule.hpp"

namespace mdn {

enum class Nonfinite { stop, skip };

template <>
struct EnumNames<Nonfinite> {
  static constexpr std::pair<Nonfinite, const char*> table[] = {{Nonfinite::stop, "stop"},
                                                                {Nonfinite::skip, "skip"}};
};

struct Config {
  struct Run {
    std::string dir;
    std::uint64_t seed = 0;
    std::vector<std::string> signals = {"USR1", "USR2", "TERM"};
    std::optional<CpuLevel> cpu;  ///< none: auto
  } run;
  struct Data {
    std::vector<std::string> train;                 ///< files and glob patterns, in order
    std::optional<std::vector<std::string>> valid;
    std::string x = "x";
    std::string y = "y";
    bool normalize = true;
  } data;
  struct Model {
    std::vector<int> hidden = {64, 64};
    Activation activation = Activation::tanh;
    int components = 5;
    SigmaMode sigma = SigmaMode::softplus;
    double sigma_min = 1e-3;
    Covariance covariance = Covariance::diagonal;
  } model;
  struct Train {
    std::optional<std::int64_t> epochs;
    std::optional<std::int64_t> max_steps;
    std::int64_t batch_size = 256;
    std::optional<std::int64_t> micro_batch;  ///< resolved by validate()
    bool drop_last = false;
    Reduction reduction = Reduction::exact;
    Nonfinite nonfinite = Nonfinite::stop;
    std::optional<std::int64_t> check_replicas_every = 100;
  } train;
  struct Optim {
    OptimizerKind name = OptimizerKind::adam;
    double lr = 1e-3;
    double momentum = 0.0;
    bool nesterov = false;
    std::array<double, 2> betas = {0.9, 0.999};
    double eps = 1e-8;
    double weight_decay = 0.0;
    ScheduleSpec schedule;
  } optimizer;
  struct Clip {
    std::optional<double> global_norm;
    std::optional<double> value;
  } clip;
  struct Checkpoint {
    std::optional<std::int64_t> every_steps;
    std::optional<std::int64_t> every_epochs = 1;
    std::optional<double> every_seconds;
    std::int64_t keep_last = 3;
    bool keep_best = true;
    std::string resume = "auto";
  } checkpoint;
  struct Log {
    std::int64_t every_steps = 50;
  } log;
  struct CommSection {
    std::optional<double> timeout_seconds = 600.0;
    bool shared_memory = true;
  } comm;

  /// Where each key's value came from: "FILE:LINE:COL", "--set KEY=VALUE", or absent (default).
  std::map<std::string, std::string> origin;
  /// The config file as given on the command line.
  std::string path;

  /// "FILE:LINE:COL: " / "--set ...: " / "" for error messages about `key`.
  std::string where(const std::string& key) const;

  /// The model's shape for data with D inputs and L outputs.
  ModelSpec model_spec(int input_dim, int output_dim) const;
  OptimizerSpec optimizer_spec() const;
  ClipSpec clip_spec() const;
};

/// One entry of the key table.
struct KeySpec {
  std::string key;      ///< dotted path, e.g. "optimizer.schedule.name"
  std::string type;     ///< for people: "integer", "number or null", ...
  std::string range;    ///< for people: ">= 1", "tanh | relu", ...
  std::string doc;
  /// Sets the key from a YAML value; throws std::invalid_argument with the problem (without
  /// the key's name or origin, which the caller adds).
  std::function<void(Config&, const YAML::Node&)> set;
  /// The key's value as YAML text (full precision for numbers; "null" when unset).
  std::function<std::string(const Config&)> get;
};

/// The table, in the order of the README and the resolved config.
const std::vector<KeySpec>& keys();

/// Parses YAML text (`path` only names it in messages) and applies `overrides` ("key=value",
/// values in YAML), then validates and resolves defaults. Throws mdn::Error (exit 2).
Config parse_config(const std::string& text, const std::string& path,
                    const std::vector<std::string>& overrides = {});

/// Reads and parses a config file.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// The resolved configuration as YAML (every key, in table order).
std::string to_yaml(const Config& c);

/// The key reference as a Markdown table (README) or as text (`mdn keys`).
std::string keys_markdown();
std::string keys_text();

/// Closest known key to `word`, or "" when none is close.
std::string suggest_key(const std::string& word);

}  // namespace mdn
