#include "mdn/inference.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "mdn/checkpoint.hpp"
#include "mdn/config.hpp"
#include "mdn/cpu_choice.hpp"
#include "mdn/detmath.hpp"
#include "mdn/data.hpp"
#include "mdn/error.hpp"
#include "mdn/evaluate.hpp"
#include "mdn/h5.hpp"
#include "mdn/mixtures.hpp"
#include "mdn/network.hpp"
#include "mdn/random.hpp"
#include "mdn/scores.hpp"

namespace mdn {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Model {
  Checkpoint ck;
  CpuLevel level = CpuLevel::x86_64;  ///< the kernels' level, agreed by every rank
};

/// Reads the checkpoint on every rank (errors settled collectively) and agrees on the level.
Model load_model(const std::string& path, const std::string& cpu, Comm& comm) {
  Model m;
  std::optional<CpuLevel> requested;
  comm.collectively([&] {
    if (cpu != "auto") {
      requested = parse_cpu_level(cpu);
      if (!requested) throw input_error("--cpu must be auto | {}, got '{}'", cpu_level_names(), cpu);
    }
    m.ck = read_checkpoint(path);
  });
  const CpuChoice choice = choose_cpu_level(requested, "--cpu", parse_cpu_level(m.ck.cpu_level), false, comm);
  m.level = choice.level;
  if (comm.is_root() && !choice.replaced.empty() && !m.ck.cpu_level.empty())
    std::fprintf(stderr, "mdn: note: the model was trained at level %s, which not every rank can run; computing at %s "
                 "(results may differ from training's in their last bits)\n", m.ck.cpu_level.c_str(), to_string(m.level));
  return m;
}

/// A file list as given ("a.h5", or "a.h5, b*.h5").
std::string files_text(const std::vector<std::string>& files) {
  std::string s;
  for (const auto& f : files) s += (s.empty() ? "" : ", ") + f;
  return s;
}

json files_json(const std::vector<std::pair<std::string, std::int64_t>>& files) {
  json a = json::array();
  for (const auto& [path, rows] : files) a.push_back({{"path", path}, {"rows", rows}});
  return a;
}

/// This rank's block-aligned rows of `path`, normalised with the model's statistics.
struct Inputs {
  DataSet data;
  RowRange range;
  Mat<float> rows;  // (D [+ L], n)
};

Inputs read_inputs(const Model& m, const std::vector<std::string>& files, const std::string& x, const std::string& y,
                   const std::string& what, Comm& comm) {
  Inputs in;
  comm.collectively([&] {
    in.data = inspect_dataset(files, x, y, what);
    const DataFileInfo& f = in.data.files.front();
    if (f.x.cols != m.ck.model.input_dim)
      throw input_error("{} '{}': dataset '{}' has {} columns; the model takes {} inputs", what, f.path, x,
                        f.x.cols, m.ck.model.input_dim);
    if (!y.empty() && f.y.cols != m.ck.model.output_dim)
      throw input_error("{} '{}': dataset '{}' has {} columns; the model has {} outputs", what, f.path, y,
                        f.y.cols, m.ck.model.output_dim);
  });
  in.range = block_shard_of(in.data.rows, m.ck.micro_batch, comm.size(), comm.rank());
  in.rows = read_shard(in.data, in.range, comm, m.ck.norm.enabled ? &m.ck.norm : nullptr, nullptr);
  return in;
}

/// The output file must be creatable before any work is done, and must be neither the input
/// nor the checkpoint, which the write would replace.
void check_output(const ModelInputs& o, Comm& comm) {
  comm.collectively([&] {
    if (!comm.is_root()) return;
    const std::string& path = o.output;
    const fs::path p(path);
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    std::error_code ec;
    if (fs::is_directory(p, ec)) throw input_error("--output '{}' is a directory", path);
    std::vector<std::pair<std::string, std::string>> sources = {{"--checkpoint", o.checkpoint}};
    for (const auto& f : o.input) sources.emplace_back("--input", f);
    for (const auto& [option, source] : sources)
      if (fs::equivalent(p, source, ec))
        throw input_error("--output '{}' is the same file as {} '{}': it would be overwritten", path, option, source);
    if (!fs::is_directory(dir, ec)) throw input_error("--output '{}': directory '{}' does not exist", path, dir.string());
    if (access(dir.c_str(), W_OK | X_OK) != 0)
      throw input_error("--output '{}': directory '{}' is not writable", path, dir.string());
  });
}

struct OutputDataset {
  std::string name;
  std::vector<hsize_t> dims;
  const double* data;
};

/// Writes float64 datasets to `path` atomically (built in memory, temporary name, rename).
/// Rank 0 only.
void write_output(const std::string& path, const std::vector<OutputDataset>& sets, const json& attrs) {
  std::string bytes;
  {
    h5::Handle f = h5::create_in_memory(path);
    for (const auto& d : sets) {
      h5::write_dataset(f.get(), d.name, d.dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, d.data,
                        fmt::format("'{}': writing dataset '{}'", path, d.name));
    }
    for (const auto& [key, value] : attrs.items()) {
      const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      h5::write_attribute(f.get(), "/", key, text, fmt::format("'{}': attribute '{}'", path, key));
    }
    bytes = h5::file_image(f, fmt::format("'{}'", path));
  }
  write_file_atomically(path, bytes);
}

/// A model and this rank's rows of its input file, after checking that the output will not
/// replace either of them.
struct Opened {
  Model m;
  Inputs in;
};

Opened open_model_inputs(const ModelInputs& o, Comm& comm) {
  check_output(o, comm);
  Opened r{load_model(o.checkpoint, o.cpu, comm), {}};
  r.in = read_inputs(r.m, o.input, o.x.empty() ? r.m.ck.data_x : o.x, "", "--input", comm);
  return r;
}

/// Gathers each rank's row-major (n, width) doubles into the global (N, width) on rank 0.
std::vector<double> gather_rows(const std::vector<double>& local, Comm& comm) {
  const std::vector<char> bytes = comm.gather(local.data(), local.size() * sizeof(double));
  std::vector<double> all(bytes.size() / sizeof(double));
  if (!bytes.empty()) std::memcpy(all.data(), bytes.data(), bytes.size());
  return all;
}

std::string describe_model(const ModelSpec& s) {
  std::string hidden;
  for (int w : s.hidden) hidden += (hidden.empty() ? "" : ", ") + std::to_string(w);
  return fmt::format("{} -> [{}] {} -> K = {} components, {} covariance, {} sigma (sigma_min {}); {} parameters",
                     s.input_dim, hidden, to_string(s.activation), s.components, to_string(s.covariance),
                     to_string(s.sigma), s.sigma_min, Layout(s).size());
}

}  // namespace

namespace {

/// The share of `draws` samples of row j's mixture whose log-density exceeds that of y; the
/// draws are `mdn sample`'s (temperatures 1) from stream kHdr + global row, seed 0.
double hdr_above(const Mixtures& mix, Index j, std::uint64_t global_row, const double* y, std::int64_t draws,
                 RowDensity& density, std::vector<double>& samples) {
  const Index L = mix.L;
  samples.resize(static_cast<std::size_t>(draws * L));
  draw_samples(mix, j, rng::kHdr + global_row, 0, 1.0, 1.0, draws, samples.data());
  density.set_row(j);
  const double ly = density(y);
  std::int64_t above = 0;
  for (std::int64_t d = 0; d < draws; ++d) above += density(samples.data() + d * L) > ly ? 1 : 0;
  return static_cast<double>(above) / static_cast<double>(draws);
}

json level_object(const std::function<double(std::size_t)>& f) {
  json o = json::object();
  for (std::size_t a = 0; a < scores::kLevels.size(); ++a) o[scores::kLevelNames[a]] = f(a);
  return o;
}

}  // namespace

int eval_command(const EvalOptions& o, Comm& comm) {
  if (o.hdr_samples < 0) throw Error(Exit::input, "--hdr-samples must be 0 or more", true);
  const Model m = load_model(o.checkpoint, o.cpu, comm);
  const std::string x = o.x.empty() ? m.ck.data_x : o.x;
  const std::string y = o.y.empty() ? m.ck.data_y : o.y;
  const Inputs in = read_inputs(m, o.data, x, y, "--data", comm);
  Network<float> net(m.level, m.ck.model, m.ck.micro_batch);
  const EvalResult r = evaluate(net, m.ck.params.data(), in.rows, comm);
  const double nll = r.nll_sum / static_cast<double>(r.rows) + m.ck.norm.log_det_y();

  // Calibration, in the network's units (PIT values and coverages do not depend on the units;
  // the CRPS scales with y_std).
  const Index D = m.ck.model.input_dim, K = m.ck.model.components, L = m.ck.model.output_dim, n = in.rows.cols();
  const Mixtures mix = mixtures(m.ck, m.level, in.rows, false);
  scores::Calibration cal(static_cast<int>(L));
  std::vector<double> buffers(static_cast<std::size_t>(3 * K * L)), yj(static_cast<std::size_t>(L)),
      crps_scale(static_cast<std::size_t>(L));
  std::vector<scores::Marginal> marginals(static_cast<std::size_t>(L));
  for (Index l = 0; l < L; ++l) crps_scale[static_cast<std::size_t>(l)] = m.ck.norm.enabled ? m.ck.norm.y_std(l) : 1.0;
  RowDensity density(mix);
  std::vector<double> draws;
  for (Index j = 0; j < n; ++j) {
    for (Index l = 0; l < L; ++l) {
      double* b = buffers.data() + 3 * K * l;
      marginals[static_cast<std::size_t>(l)] = mix.marginal(j, l, b, b + K, b + 2 * K);
      yj[static_cast<std::size_t>(l)] = static_cast<double>(in.rows(D + l, j));
    }
    cal.add_row(marginals.data(), yj.data(), crps_scale.data());
    if (o.hdr_samples > 0)
      cal.add_hdr(hdr_above(mix, j, static_cast<std::uint64_t>(in.range.begin + j), yj.data(), o.hdr_samples, density,
                            draws));
  }
  cal.reduce(comm);

  if (comm.is_root()) {
    if (o.json) {
      json crps = json::array(), hist = json::array(), err = json::array(), coverage = json::array();
      for (int l = 0; l < static_cast<int>(L); ++l) {
        crps.push_back(cal.crps_mean(l));
        const auto h = cal.pit_histogram(l);
        hist.push_back(std::vector<std::int64_t>(h.begin(), h.end()));
        err.push_back(cal.calibration_error(l));
        coverage.push_back(level_object([&](std::size_t a) { return cal.coverage(l, a); }));
      }
      const json hdr = o.hdr_samples > 0 ? level_object([&](std::size_t a) { return cal.hdr_coverage(a); }) : json(nullptr);
      std::printf("%s\n", json{{"nll", nll}, {"count", r.rows}, {"crps", crps}, {"pit_histogram", hist},
                               {"calibration_error", err}, {"coverage", coverage}, {"hdr_coverage", hdr},
                               {"hdr_samples", o.hdr_samples}, {"checkpoint", o.checkpoint},
                               {"data", files_text(o.data)}, {"step", m.ck.step}, {"cpu", to_string(m.level)}}
                               .dump()
                               .c_str());
    } else {
      std::printf("nll %.6f  (%lld rows of '%s'; mean negative log-likelihood per sample, nats, data units)\n", nll,
                  static_cast<long long>(r.rows), files_text(o.data).c_str());
      std::printf("calibration (per output; coverage of the central intervals at 50/80/90/95%%):\n");
      for (int l = 0; l < static_cast<int>(L); ++l) {
        std::string hist;
        for (std::int64_t c : cal.pit_histogram(l))
          hist += fmt::format("{}{:.3f}", hist.empty() ? "" : " ", static_cast<double>(c) / static_cast<double>(cal.rows));
        std::printf("  y[%d]  crps %.6g  calibration error %.4f  coverage %.3f %.3f %.3f %.3f  pit [%s]\n", l,
                    cal.crps_mean(l), cal.calibration_error(l), cal.coverage(l, 0), cal.coverage(l, 1),
                    cal.coverage(l, 2), cal.coverage(l, 3), hist.c_str());
      }
      if (o.hdr_samples > 0)
        std::printf("  joint highest-density regions: coverage %.3f %.3f %.3f %.3f  (%lld draws per row)\n",
                    cal.hdr_coverage(0), cal.hdr_coverage(1), cal.hdr_coverage(2), cal.hdr_coverage(3),
                    static_cast<long long>(o.hdr_samples));
    }
    std::fflush(stdout);
  }
  return 0;
}

int predict_command(const PredictOptions& o, Comm& comm) {
  const Opened opened = open_model_inputs(o, comm);
  const Model& m = opened.m;  // named references, not a structured binding: lambdas capture them
  const Inputs& in = opened.in;
  const Index K = m.ck.model.components, L = m.ck.model.output_dim, n = in.rows.cols();
  const Index Q = static_cast<Index>(o.quantiles.size());
  comm.collectively([&] {
    for (double q : o.quantiles)
      if (!(q > 0 && q < 1)) throw input_error("--quantiles: {} is not in (0, 1)", q);
  });
  const Mixtures mix = mixtures(m.ck, m.level, in.rows);
  // Row-major per row: pi (K), mu (K L), sigma (K L), mean (L), variance (L), mode (L); with full
  // covariance then covariance (K L L) and covariance_total (L L); then quantiles (Q L).
  const Index base = K + 2 * K * L + 3 * L;
  const Index at_quantiles = base + (mix.full() ? (K + 1) * L * L : 0);
  const Index width = at_quantiles + Q * L;
  std::vector<double> local(static_cast<std::size_t>(n * width));
  Eigen::VectorXd row_mean(L);
  for (Index j = 0; j < n; ++j) {
    double* row = local.data() + j * width;
    Index heaviest = 0;
    mix.pi.row(j).maxCoeff(&heaviest);
    for (Index k = 0; k < K; ++k) row[k] = mix.pi(j, k);
    for (Index c = 0; c < K * L; ++c) {
      row[K + c] = mix.mu(j, c);
      row[K + K * L + c] = mix.sigma(j, c);
    }
    for (Index l = 0; l < L; ++l) {
      row_mean(l) = 0;
      for (Index k = 0; k < K; ++k) row_mean(l) += mix.pi(j, k) * mix.mu(j, k * L + l);
      double var = 0;  // law of total variance, in the stable form sum pi (sigma^2 + (mu - mean)^2)
      for (Index k = 0; k < K; ++k) {
        const double d = mix.mu(j, k * L + l) - row_mean(l);
        var += mix.pi(j, k) * (mix.sigma(j, k * L + l) * mix.sigma(j, k * L + l) + d * d);
      }
      row[K + 2 * K * L + l] = row_mean(l);
      row[K + 2 * K * L + L + l] = var;
      row[K + 2 * K * L + 2 * L + l] = mix.mu(j, heaviest * L + l);
    }
    for (Index l = 0; l < L; ++l) marginal_quantiles(mix, m.ck.norm, j, l, o.quantiles, row + at_quantiles + l, L);
    if (!mix.full()) continue;
    // Sigma_k = T T^T; the total by the law of total covariance, sum pi (Sigma_k + d d^T).
    Eigen::Map<RowMat<double>> total(row + base + K * L * L, L, L);
    total.setZero();
    for (Index k = 0; k < K; ++k) {
      Eigen::Map<RowMat<double>> cov(row + base + k * L * L, L, L);
      const auto t = mix.tri(j, k);
      cov.noalias() = t * t.transpose();
      const Eigen::VectorXd d = mix.mu.row(j).segment(k * L, L).transpose() - row_mean;
      total.noalias() += mix.pi(j, k) * (cov + d * d.transpose());
    }
  }
  const std::vector<double> all = gather_rows(local, comm);
  comm.collectively([&] {
    if (!comm.is_root()) return;
    const auto N = static_cast<hsize_t>(in.data.rows);
    const auto k = static_cast<hsize_t>(K), l = static_cast<hsize_t>(L);
    // Split the rows into one array per dataset.
    auto column_block = [&](Index first, Index count) {
      std::vector<double> v(static_cast<std::size_t>(N) * static_cast<std::size_t>(count));
      for (hsize_t i = 0; i < N; ++i)
        std::copy_n(all.data() + i * static_cast<hsize_t>(width) + first, count, v.data() + i * static_cast<hsize_t>(count));
      return v;
    };
    const auto pi = column_block(0, K), mu = column_block(K, K * L), sigma = column_block(K + K * L, K * L);
    const auto mean = column_block(K + 2 * K * L, L), var = column_block(K + 2 * K * L + L, L),
               mode = column_block(K + 2 * K * L + 2 * L, L);
    std::vector<OutputDataset> sets = {{"pi", {N, k}, pi.data()},      {"mu", {N, k, l}, mu.data()},
                                       {"sigma", {N, k, l}, sigma.data()}, {"mean", {N, l}, mean.data()},
                                       {"variance", {N, l}, var.data()}, {"mode", {N, l}, mode.data()}};
    std::vector<double> cov, total;
    if (mix.full()) {
      cov = column_block(base, K * L * L);
      total = column_block(base + K * L * L, L * L);
      sets.push_back({"covariance", {N, k, l, l}, cov.data()});
      sets.push_back({"covariance_total", {N, l, l}, total.data()});
    }
    const auto quantiles = column_block(at_quantiles, Q * L);
    if (Q > 0) sets.push_back({"quantiles", {N, static_cast<hsize_t>(Q), l}, quantiles.data()});
    std::string levels;
    for (double q : o.quantiles) levels += fmt::format("{}{}", levels.empty() ? "" : ",", q);
    write_output(o.output, sets,
                 {{"checkpoint", o.checkpoint}, {"input", files_text(o.input)}, {"units", "data (as stored in the input file)"},
                  {"covariance", to_string(m.ck.model.covariance)}, {"quantile_levels", levels}});
    std::printf("wrote '%s': pi (%llu, %lld), mu and sigma (%llu, %lld, %lld), mean, variance and mode (%llu, %lld)%s%s\n",
                o.output.c_str(), static_cast<unsigned long long>(N), static_cast<long long>(K),
                static_cast<unsigned long long>(N), static_cast<long long>(K), static_cast<long long>(L),
                static_cast<unsigned long long>(N), static_cast<long long>(L),
                mix.full() ? fmt::format(", covariance ({}, {}, {}, {}), covariance_total ({}, {}, {})", N, K, L, L, N, L, L).c_str()
                           : "",
                Q > 0 ? fmt::format(", quantiles ({}, {}, {})", N, Q, L).c_str() : "");
    std::fflush(stdout);
  });
  return 0;
}

int sample_command(const SampleOptions& o, Comm& comm) {
  if (o.samples < 1) throw Error(Exit::input, "--samples must be at least 1", true);
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    throw Error(Exit::input, "--temperature must be positive", true);
  if (!(o.sigma_temperature > 0) || !std::isfinite(o.sigma_temperature))
    throw Error(Exit::input, "--sigma-temperature must be positive", true);
  const Opened opened = open_model_inputs(o, comm);
  const Model& m = opened.m;  // named references, not a structured binding: lambdas capture them
  const Inputs& in = opened.in;
  const Index L = m.ck.model.output_dim, n = in.rows.cols();
  const Index S = o.samples;
  const double need = static_cast<double>(in.data.rows) * static_cast<double>(S * L) * 8.0;
  if (need > 16.0 * (1 << 30))
    throw Error(Exit::input, fmt::format("--samples {}: the output would hold {:.1f} GiB", S, need / (1 << 30)), true);
  const Mixtures mix = mixtures(m.ck, m.level, in.rows);
  std::vector<double> local(static_cast<std::size_t>(n * S * L));
  for (Index j = 0; j < n; ++j)
    draw_samples(mix, j, rng::kSample + static_cast<std::uint64_t>(in.range.begin + j), o.seed, o.temperature,
                 o.sigma_temperature, S, local.data() + j * S * L);
  const std::vector<double> all = gather_rows(local, comm);
  comm.collectively([&] {
    if (!comm.is_root()) return;
    const auto N = static_cast<hsize_t>(in.data.rows);
    write_output(o.output, {{"samples", {N, static_cast<hsize_t>(S), static_cast<hsize_t>(L)}, all.data()}},
                 {{"checkpoint", o.checkpoint}, {"input", files_text(o.input)}, {"seed", std::to_string(o.seed)},
                  {"temperature", fmt::format("{}", o.temperature)},
                  {"sigma_temperature", fmt::format("{}", o.sigma_temperature)}});
    std::printf("wrote '%s': samples (%llu, %lld, %lld)\n", o.output.c_str(), static_cast<unsigned long long>(N),
                static_cast<long long>(S), static_cast<long long>(L));
    std::fflush(stdout);
  });
  return 0;
}

int inspect_command(const InspectOptions& o, Comm& comm) {
  Checkpoint ck;
  ChecksumStatus status;
  comm.collectively([&] {
    if (comm.is_root()) ck = read_checkpoint(o.checkpoint, &status);
  });
  if (!comm.is_root()) return comm.max(0);
  const ModelSpec& s = ck.model;
  if (o.json) {
    json j = {{"checkpoint", o.checkpoint}, {"format", "mdn-checkpoint"}, {"format_version", ck.format_version},
              {"cpu_level", ck.cpu_level.empty() ? json(nullptr) : json(ck.cpu_level)},
              {"permutation", ck.permutation}, {"train_files", files_json(ck.train_files)},
              {"checksum_ok", status.ok()}, {"checksum", status.stored}, {"checksum_computed", status.computed},
              {"step", ck.step}, {"epoch", ck.epoch}, {"samples_seen", ck.samples_seen}, {"world_size", ck.world_size},
              {"parameters", Layout(s).size()}, {"input_dim", s.input_dim}, {"output_dim", s.output_dim},
              {"components", s.components}, {"hidden", s.hidden}, {"activation", to_string(s.activation)},
              {"sigma", to_string(s.sigma)}, {"sigma_min", s.sigma_min}, {"covariance", to_string(s.covariance)}, {"normalization", ck.norm.enabled},
              {"optimizer", to_string(ck.optimizer)}, {"optimizer_step", ck.optimizer_steps},
              {"best_valid_nll", std::isnan(ck.best_valid_nll) ? json(nullptr) : json(ck.best_valid_nll)},
              {"config", ck.config}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("checkpoint  %s\n", o.checkpoint.c_str());
    std::printf("format      mdn-checkpoint, version %lld\n", static_cast<long long>(ck.format_version));
    std::printf("checksum    %s\n", status.ok() ? ("ok (" + status.stored + ")").c_str()
                                                : ("MISMATCH: stored " + status.stored + ", computed " + status.computed).c_str());
    std::printf("model       %s\n", describe_model(s).c_str());
    std::printf("data        D = %d inputs, L = %d outputs, normalisation %s\n", s.input_dim, s.output_dim,
                ck.norm.enabled ? "on" : "off");
    std::printf("progress    step %lld, epoch %lld, %lld samples seen; saved by %lld rank%s\n",
                static_cast<long long>(ck.step), static_cast<long long>(ck.epoch), static_cast<long long>(ck.samples_seen),
                static_cast<long long>(ck.world_size), ck.world_size == 1 ? "" : "s");
    std::printf("optimizer   %s, step %lld\n", to_string(ck.optimizer), static_cast<long long>(ck.optimizer_steps));
    std::printf("cpu level   %s\n", ck.cpu_level.empty() ? "not recorded (format version 1)" : ck.cpu_level.c_str());
    std::printf("epoch order %s%s\n", ck.permutation.c_str(), ck.format_version < 3 ? " (format versions 1 and 2)" : "");
    for (std::size_t f = 0; f < ck.train_files.size(); ++f)
      std::printf("%s %s (%lld rows)\n", f == 0 ? "train files" : "           ", ck.train_files[f].first.c_str(),
                  static_cast<long long>(ck.train_files[f].second));
    if (std::isnan(ck.best_valid_nll)) std::printf("best valid  none\n");
    else std::printf("best valid  %.6f\n", ck.best_valid_nll);
    std::printf("config\n");
    std::string cfg = ck.config;
    for (std::size_t at = 0; at < cfg.size();) {
      const auto nl = cfg.find('\n', at);
      std::printf("  %s\n", cfg.substr(at, nl - at).c_str());
      if (nl == std::string::npos) break;
      at = nl + 1;
    }
  }
  std::fflush(stdout);
  const int code = status.ok() ? 0 : static_cast<int>(Exit::input);
  if (!status.ok()) std::fprintf(stderr, "mdn: error: checkpoint '%s': checksum mismatch: the file is corrupt\n", o.checkpoint.c_str());
  return comm.max(code);
}

}  // namespace mdn
