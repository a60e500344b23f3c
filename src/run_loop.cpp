#include "mdn/run_loop.hpp"

#include "mdn/shuffle.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "mdn/error.hpp"
#include "mdn/evaluate.hpp"
#include "mdn/schedule.hpp"
#include "mdn/signals.hpp"

namespace mdn {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- the sinks ----------------------------------------------------------------------------------

MetricsFile::MetricsFile(const std::string& run_dir) : out_(run_dir + "/metrics.jsonl", std::ios::app), path_(run_dir + "/metrics.jsonl") {
  if (!out_) throw run_error("cannot open '{}' for writing", path_);
}

void MetricsFile::write(const json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw run_error("cannot write '{}'", path_);
}

CheckpointFiles::CheckpointFiles(const std::string& run_dir, std::int64_t keep_last, const Faults& faults)
    : dir_(checkpoint_dir(run_dir)), keep_last_(static_cast<std::size_t>(keep_last)), faults_(faults) {}

std::string CheckpointFiles::save_step(const Checkpoint& ck) {
  const std::string path = step_path(ck.step);
  write_checkpoint(path, ck, faults_);
  // Keep the newest keep_last step checkpoints (never the one just written).
  auto all = step_checkpoints(dir_);
  for (std::size_t i = 0; i + keep_last_ < all.size(); ++i)
    if (all[i].second != path) fs::remove(all[i].second);
  return path;
}

std::string CheckpointFiles::save_best(const Checkpoint& ck) {
  const std::string path = dir_ + "/best.h5";
  write_checkpoint(path, ck, faults_);
  return path;
}

std::string CheckpointFiles::step_path(std::int64_t step) const { return checkpoint_name(dir_, step); }

// ---- the loop -----------------------------------------------------------------------------------

namespace {

std::string human_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string human_rate(double r) {
  if (r >= 1e6) return fmt::format("{:.2f}M", r / 1e6);
  if (r >= 1e3) return fmt::format("{:.1f}k", r / 1e3);
  return fmt::format("{:.0f}", r);
}

/// This process's peak resident memory (VmHWM), in MiB.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return 0;
}

}  // namespace

RunLoop::RunLoop(Prepared& p, Comm& comm, const Checkpoint* resume, MetricsSink& metrics, CheckpointSink& checkpoints,
                 const Faults& faults)
    : p_(p),
      c_(p.config),
      comm_(comm),
      metrics_(metrics),
      checkpoints_(checkpoints),
      faults_(faults),
      step_fn_(p, comm, faults),
      replica_hashes_(static_cast<std::size_t>(comm.size()), 0) {
  total_steps_ = mdn::total_steps(c_, p.batches);
  if (resume != nullptr) {
    step_fn_.params() = resume->params;
    Optimizer<float>& opt = step_fn_.optimizer();
    opt.set_steps(resume->optimizer_steps);
    for (auto& st : opt.state())
      for (const auto& [name, buf] : resume->optimizer_state)
        if (name == st.name) *st.buffer = buf;
    step_ = resume->step;
    epoch_ = resume->epoch;
    samples_seen_ = resume->samples_seen;
    best_valid_ = resume->best_valid_nll;
    last_checkpoint_step_ = resume->step;
  } else {
    initialize(step_fn_.params().data(), Layout(p.model), c_.run.seed);
  }
}

void RunLoop::record(const json& r) {
  if (comm_.is_root()) metrics_.write(r);
}

RunEnd RunLoop::run() {
  run_start_ = Clock::now();
  last_checkpoint_time_ = run_start_;
  interval_.start = run_start_;
  first_step_ = step_;
  first_samples_ = samples_seen_;
  const std::int64_t per_epoch = p_.batches.batches_per_epoch();
  std::int64_t validated_at = -1;

  while (step_ < total_steps_) {
    const std::int64_t e = step_ / per_epoch;
    comm_.set_phase("exchanging the epoch's rows", step_ + 1);
    const auto t0 = Clock::now();
    step_fn_.start_epoch(e);
    epoch_start_seconds_ += seconds_since(t0);
    ++epoch_starts_;
    for (Index b = step_ % per_epoch; b < per_epoch && step_ < total_steps_; ++b) {
      const std::int64_t number = step_ + 1;
      StepFlags requests;
      requests.stop = stop_signal_received();
      requests.checkpoint = comm_.is_root() && c_.checkpoint.every_seconds &&
                            seconds_since(last_checkpoint_time_) >= *c_.checkpoint.every_seconds;
      const double lr = learning_rate(c_.optimizer.schedule, c_.optimizer.lr, step_, total_steps_);
      comm_.set_phase("computing and reducing the step's gradients", number);
      faults_.before_step(number, comm_.rank());
      const StepOutcome out = step_fn_.run(b, number, lr, requests);
      if (!out.applied) on_nonfinite();
      step_ = number;
      samples_seen_ += out.rows;
      if (faults_.drifts(step_, comm_.rank())) step_fn_.params()(0) += 1e-3f;
      if (c_.train.check_replicas_every && step_ % *c_.train.check_replicas_every == 0) check_replicas();
      log_train(out, lr, step_ == total_steps_ || out.flags.stop);
      const bool epoch_done = b + 1 == per_epoch;
      if (epoch_done) epoch_ = e + 1;
      if (epoch_done && p_.valid_data) {
        validate_and_keep_best();
        validated_at = step_;
      }
      if (out.flags.stop) return stop_by_signal();
      if (checkpoint_due(epoch_done, out.flags)) checkpoint_unless_saved();
    }
  }
  if (p_.valid_data && validated_at != step_ && step_ > first_step_) validate_and_keep_best();
  checkpoint_unless_saved();
  write_summary();
  if (comm_.is_root()) {
    std::printf("done: %lld steps%s; model in '%s'\n", static_cast<long long>(step_),
                skipped_ > 0 ? fmt::format(" ({} skipped)", skipped_).c_str() : "",
                checkpoints_.step_path(step_).c_str());
    std::fflush(stdout);
  }
  return RunEnd::finished;
}

void RunLoop::on_nonfinite() {
  if (c_.train.nonfinite == Nonfinite::stop) {
    // The parameters are still those before this step: save them, then stop.
    checkpoint_unless_saved();
    throw Error(Exit::failure,
                fmt::format("step {}: non-finite loss or gradient on some rank (train.nonfinite: "
                            "stop); the last good state is in '{}'",
                            step_ + 1, checkpoints_.step_path(step_)),
                true);
  }
  ++skipped_;
  record(json{{"kind", "nonfinite"}, {"step", step_ + 1}, {"action", to_string(Nonfinite::skip)}});
  if (comm_.is_root()) {
    std::printf("step %lld: non-finite loss or gradient on some rank: update skipped on every rank "
                "(train.nonfinite: skip)\n", static_cast<long long>(step_ + 1));
  }
}

void RunLoop::validate_and_keep_best() {
  const double v = validate();
  if (std::isnan(best_valid_) || v < best_valid_) {
    best_valid_ = v;
    if (c_.checkpoint.keep_best) save_best();
  }
}

bool RunLoop::checkpoint_due(bool epoch_done, const StepFlags& flags) const {
  return (c_.checkpoint.every_steps && step_ % *c_.checkpoint.every_steps == 0) ||
         (epoch_done && c_.checkpoint.every_epochs && epoch_ % *c_.checkpoint.every_epochs == 0) ||
         flags.checkpoint;
}

void RunLoop::checkpoint_unless_saved() {
  if (last_checkpoint_step_ == step_) return;
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("writing a checkpoint (rank 0)", step_);
  comm_.collectively([&] {
    if (!comm_.is_root()) return;
    const std::string path = checkpoints_.save_step(snapshot());
    metrics_.write(json{{"kind", "checkpoint"}, {"step", step_}, {"epoch", epoch_}, {"path", path}});
  });
  last_checkpoint_step_ = step_;
  last_checkpoint_time_ = Clock::now();
}

void RunLoop::save_best() {
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("writing best.h5 (rank 0)", step_);
  comm_.collectively([&] {
    if (!comm_.is_root()) return;
    const std::string path = checkpoints_.save_best(snapshot());
    metrics_.write(json{{"kind", "checkpoint"}, {"step", step_}, {"epoch", epoch_}, {"path", path}, {"best", true}});
  });
}

RunEnd RunLoop::stop_by_signal() {
  checkpoint_unless_saved();
  if (comm_.is_root()) {
    std::printf("stopped by a signal at step %lld: checkpoint '%s'; run the same command to resume (exit code 75)\n",
                static_cast<long long>(step_), checkpoints_.step_path(step_).c_str());
    std::fflush(stdout);
  }
  return RunEnd::stopped_by_signal;
}

void RunLoop::log_train(const StepOutcome& last, double lr, bool force) {
  if (last.applied) {
    interval_.loss_sum += last.loss;
    ++interval_.steps;
  }
  interval_.samples += last.rows;
  if (!force && step_ % c_.log.every_steps != 0) return;
  StepTimes& times = step_fn_.times();
  const double dt = seconds_since(interval_.start) - interval_.t_other;
  const double rate = dt > 0 ? static_cast<double>(interval_.samples) / dt : 0.0;
  const double loss = interval_.steps > 0 ? interval_.loss_sum / static_cast<double>(interval_.steps)
                                          : std::numeric_limits<double>::quiet_NaN();
  const double run_rate = static_cast<double>(step_ - first_step_) / seconds_since(run_start_);
  const double eta = static_cast<double>(total_steps_ - step_) / run_rate;
  if (comm_.is_root()) {
    // The epoch the last step belongs to (1-based), and the run's last.
    const std::int64_t per_epoch = p_.batches.batches_per_epoch();
    const std::int64_t epoch = (step_ - 1) / per_epoch + 1;
    const std::int64_t epochs = (total_steps_ + per_epoch - 1) / per_epoch;
    metrics_.write(json{{"kind", "train"}, {"step", step_}, {"epoch", epoch}, {"loss", loss},
                        {"grad_norm", last.grad_norm}, {"lr", lr}, {"samples_per_s", rate},
                        {"t_compute", times.compute}, {"t_comm", times.comm}, {"t_io", times.io}});
    std::printf("epoch %lld/%lld  step %lld/%lld  loss %.5f  grad_norm %.3g  lr %.3g  %s samples/s  ETA %s\n",
                static_cast<long long>(epoch), static_cast<long long>(epochs), static_cast<long long>(step_),
                static_cast<long long>(total_steps_), loss, last.grad_norm, lr, human_rate(rate).c_str(),
                human_duration(eta).c_str());
    std::fflush(stdout);
  }
  interval_ = Interval{};
  interval_.start = Clock::now();
  times = StepTimes{};
}

double RunLoop::validate() {
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("validation", step_);
  const EvalResult r = evaluate(step_fn_.network(), step_fn_.params().data(), p_.valid_shard, comm_);
  const double nll = r.nll_sum / static_cast<double>(r.rows) + p_.norm.log_det_y();
  record(json{{"kind", "valid"}, {"step", step_}, {"epoch", epoch_}, {"valid_nll", nll}, {"rows", r.rows}});
  if (comm_.is_root()) {
    std::printf("valid  epoch %lld  step %lld  nll %.6f  (%lld rows)\n", static_cast<long long>(epoch_),
                static_cast<long long>(step_), nll, static_cast<long long>(r.rows));
    std::fflush(stdout);
  }
  return nll;
}

void RunLoop::check_replicas() {
  // Every rank's hash at its own index; one small collective gives every rank all of them.
  const auto P = static_cast<std::size_t>(comm_.size());
  comm_.set_phase("comparing parameter hashes", step_);
  std::fill(replica_hashes_.begin(), replica_hashes_.end(), 0);
  replica_hashes_[static_cast<std::size_t>(comm_.rank())] =
      XXH3_64bits(step_fn_.params().data(), static_cast<std::size_t>(step_fn_.params().size()) * sizeof(float));
  comm_.allreduce(replica_hashes_.data(), P, ReduceOp::max);
  // Groups of ranks with equal hashes, in the order of their lowest rank.
  std::vector<std::pair<std::uint64_t, std::vector<int>>> groups;
  for (std::size_t r = 0; r < P; ++r) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == replica_hashes_[r]; });
    if (it == groups.end()) {
      groups.push_back({replica_hashes_[r], {}});
      it = groups.end() - 1;
    }
    it->second.push_back(static_cast<int>(r));
  }
  if (groups.size() == 1) return;
  std::string detail;
  for (const auto& [hash, ranks] : groups) {
    std::string list;
    for (int r : ranks) list += (list.empty() ? "" : ", ") + std::to_string(r);
    detail += fmt::format("{}{} {} {} parameters with hash {:016x}", detail.empty() ? "" : "; ",
                          ranks.size() == 1 ? "rank" : "ranks", list, ranks.size() == 1 ? "holds" : "hold", hash);
  }
  throw Error(Exit::failure,
              fmt::format("step {}: the ranks' parameters differ (replica drift): {}. The replicas must be "
                          "identical; this indicates a hardware fault, a non-deterministic reduction or a bug",
                          step_, detail),
              true);
}

Checkpoint RunLoop::snapshot() {
  Checkpoint ck;
  ck.step = step_;
  ck.epoch = epoch_;
  ck.samples_seen = samples_seen_;
  ck.world_size = comm_.size();
  ck.best_valid_nll = best_valid_;
  ck.config = to_yaml(c_);
  ck.model = p_.model;
  ck.norm = p_.norm;
  ck.params = step_fn_.params();
  ck.optimizer = c_.optimizer.name;
  ck.optimizer_steps = step_fn_.optimizer().steps();
  ck.cpu_level = to_string(p_.cpu.level);
  ck.permutation = IndexShuffle::kScheme;
  ck.train_files = p_.train_data.recorded();
  for (const auto& st : step_fn_.optimizer().state()) ck.optimizer_state.emplace_back(st.name, *st.buffer);
  return ck;
}

void RunLoop::write_summary() {
  const double mine = peak_rss_mib();
  const std::vector<char> bytes = comm_.gather(&mine, sizeof mine);
  const double read = comm_.max(p_.read_seconds);
  const double epoch_start = comm_.max(epoch_start_seconds_);
  const std::int64_t bytes_read = comm_.max<std::int64_t>(p_.train_read.bytes);
  const std::int64_t io_read = comm_.max<std::int64_t>(p_.train_read.io_bytes);
  if (!comm_.is_root()) return;
  std::vector<double> rss(bytes.size() / sizeof(double));
  std::memcpy(rss.data(), bytes.data(), bytes.size());
  const double seconds = seconds_since(run_start_);
  const std::int64_t steps = step_ - first_step_;
  json rec = {{"kind", "summary"}, {"step", step_}, {"steps_this_run", steps}, {"seconds", seconds},
              {"samples_per_s", seconds > 0 ? static_cast<double>(samples_seen_ - first_samples_) / seconds : 0.0},
              {"t_read", read}, {"t_epoch_start", epoch_start}, {"epoch_starts", epoch_starts_},
              {"train_bytes_read", bytes_read}, {"train_io_bytes", io_read}, {"train_read_passes", p_.train_read.passes},
              {"peak_rss_mib", rss}, {"estimated_peak_mib", p_.memory.total_mib()}, {"ranks", comm_.size()}};
  metrics_.write(rec);
  std::printf("summary: %lld steps in %.1f s, reading and normalising the data %.2f s, starting epochs %.2f s; peak "
              "memory per rank %.0f MiB (estimated %.0f)\n",
              static_cast<long long>(steps), seconds, read, epoch_start, *std::max_element(rss.begin(), rss.end()),
              p_.memory.total_mib());
}


}  // namespace mdn
