#include "mdn/trainer.hpp"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "mdn/build_info.hpp"
#include "mdn/clip.hpp"
#include "mdn/error.hpp"
#include "mdn/evaluate.hpp"
#include "mdn/faults.hpp"
#include "mdn/resume.hpp"
#include "mdn/schedule.hpp"
#include "mdn/signals.hpp"
#include "mdn/timer.hpp"

namespace mdn {

namespace fs = std::filesystem;
using json = nlohmann::json;

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

}  // namespace

Trainer::Trainer(Prepared& p, Comm& comm, const Checkpoint* resume, const Faults& faults)
    : p_(p),
      c_(p.config),
      comm_(comm),
      faults_(faults),
      layout_(p.model),
      net_(p.cpu.level, p.model, p.batches.micro),
      params_(layout_.size()),
      grad_(layout_.size()),
      optimizer_(p.config.optimizer_spec(), layout_, p.cpu.level),
      reducer_(layout_, p.config.train.reduction,
               (p.batches.batch / p.batches.micro + comm.size() - 1) / comm.size(), comm, p.cpu.level, faults,
               IntegerSumOptions{p.config.comm.shared_memory}),
      data_(comm, std::move(p.train_shard), p.train_range, p.model.input_dim, p.model.output_dim, p.batches),
      x_(p.model.input_dim, p.batches.micro),
      y_(p.model.output_dim, p.batches.micro),
      replica_hashes_(static_cast<std::size_t>(comm.size()), 0) {
  total_steps_ = mdn::total_steps(c_, p.batches);

  if (resume != nullptr) {
    params_ = resume->params;
    optimizer_.set_steps(resume->optimizer_steps);
    for (auto& st : optimizer_.state())
      for (const auto& [name, buf] : resume->optimizer_state)
        if (name == st.name) *st.buffer = buf;
    step_ = resume->step;
    epoch_ = resume->epoch;
    samples_seen_ = resume->samples_seen;
    best_valid_ = resume->best_valid_nll;
    last_checkpoint_step_ = resume->step;
  } else {
    initialize(params_.data(), layout_, c_.run.seed);
  }
  if (comm_.is_root()) {
    metrics_ = std::make_unique<std::ofstream>(c_.run.dir + "/metrics.jsonl", std::ios::app);
    if (!*metrics_) throw run_error("cannot open '{}/metrics.jsonl' for writing", c_.run.dir);
  }
}

void Trainer::write_metrics(const std::string& line) {
  if (!metrics_) return;
  *metrics_ << line << '\n';
  metrics_->flush();
}

Trainer::StepOutcome Trainer::train_step(Index batch) {
  const auto& local = data_.micro_batches(batch);
  const BatchSpec& b = p_.batches;
  const Index micro_total = (b.batch_rows(batch) + b.micro - 1) / b.micro;
  comm_.set_phase("computing and reducing the step's gradients", step_ + 1);
  faults_.before_step(step_ + 1, comm_.rank());
  {
    ScopedTimer t(interval_.t_compute);
    for (std::size_t k = 0; k < local.size(); ++k) {
      const auto& mb = local[k];
      data_.load(mb, x_, y_);
      float* g = reducer_.gradient(static_cast<Index>(k));
      double loss = net_.loss_and_grad(params_.data(), x_.leftCols(mb.rows), y_.leftCols(mb.rows), g);
      if (k == 0 && faults_.poisons_gradient(step_ + 1, comm_.rank())) g[0] = std::numeric_limits<float>::quiet_NaN();
      reducer_.record(static_cast<Index>(k), loss, mb.rows);
    }
  }
  StepFlags flags;
  flags.stop = stop_signal_received();
  flags.checkpoint = comm_.is_root() && c_.checkpoint.every_seconds &&
                     seconds_since(last_checkpoint_time_) >= *c_.checkpoint.every_seconds;
  const double comm_before = reducer_.comm_seconds();
  GradientReducer::Result r;
  {
    ScopedTimer t(interval_.t_compute);  // quantisation; the collectives are moved to t_comm below
    r = reducer_.reduce(static_cast<Index>(local.size()), micro_total, grad_.data(), flags, step_ + 1);
  }
  const double comm = reducer_.comm_seconds() - comm_before;
  interval_.t_comm += comm;
  interval_.t_compute -= comm;

  StepOutcome out;
  out.flags = r.flags;
  out.rows = r.rows;
  out.lr = learning_rate(c_.optimizer.schedule, c_.optimizer.lr, step_, total_steps_);
  if (!r.finite) return out;  // applied = false
  out.loss = r.loss_sum / static_cast<double>(r.rows) + p_.norm.log_det_y();
  {
    ScopedTimer t(interval_.t_compute);
    // The norm comes from the reduction's pass; the norm clip's factor is applied by the
    // optimizer as it reads the gradient.
    const ClipResult cr = clip_by_value(p_.cpu.level, grad_.data(), grad_.size(), c_.clip_spec(), std::sqrt(r.sum_squares));
    clipped_ever_ |= cr.norm_clipped || cr.value_clipped;
    out.grad_norm = cr.norm;
    optimizer_.step(params_.data(), grad_.data(), out.lr, cr.scale);
  }
  out.applied = true;
  return out;
}

void Trainer::log_train(const StepOutcome& last, bool force) {
  if (last.applied) {
    interval_.loss_sum += last.loss;
    ++interval_.steps;
  }
  interval_.samples += last.rows;
  if (!force && step_ % c_.log.every_steps != 0) return;
  const double dt = seconds_since(interval_.start) - interval_.t_other;
  const double rate = dt > 0 ? static_cast<double>(interval_.samples) / dt : 0.0;
  const double loss = interval_.steps > 0 ? interval_.loss_sum / static_cast<double>(interval_.steps)
                                          : std::numeric_limits<double>::quiet_NaN();
  const double run_rate = static_cast<double>(step_ - first_step_) / seconds_since(run_start_);
  const double eta = static_cast<double>(total_steps_ - step_) / run_rate;
  if (comm_.is_root()) {
    const std::int64_t per_epoch = p_.batches.batches_per_epoch();
    const std::int64_t epoch_now = std::min<std::int64_t>((step_ - 1) / per_epoch + 1, (total_steps_ + per_epoch - 1) / per_epoch);
    json rec = {{"kind", "train"}, {"step", step_}, {"epoch", epoch_now}, {"loss", loss},
                {"grad_norm", last.grad_norm}, {"lr", last.lr}, {"samples_per_s", rate},
                {"t_compute", interval_.t_compute}, {"t_comm", interval_.t_comm}, {"t_io", interval_.t_io}};
    write_metrics(rec.dump());
    std::printf("epoch %lld/%lld  step %lld/%lld  loss %.5f  grad_norm %.3g  lr %.3g  %s samples/s  ETA %s\n",
                static_cast<long long>(epoch_now), static_cast<long long>((total_steps_ + per_epoch - 1) / per_epoch),
                static_cast<long long>(step_), static_cast<long long>(total_steps_), loss, last.grad_norm,
                last.lr, human_rate(rate).c_str(), human_duration(eta).c_str());
    std::fflush(stdout);
  }
  interval_ = Interval{};
  interval_.start = Clock::now();
}

double Trainer::validate() {
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("validation", step_);
  const EvalResult r = evaluate(net_, params_.data(), p_.valid_shard, comm_);
  const double nll = r.nll_sum / static_cast<double>(r.rows) + p_.norm.log_det_y();
  if (comm_.is_root()) {
    write_metrics(json{{"kind", "valid"}, {"step", step_}, {"epoch", epoch_}, {"valid_nll", nll}, {"rows", r.rows}}.dump());
    std::printf("valid  epoch %lld  step %lld  nll %.6f  (%lld rows)\n", static_cast<long long>(epoch_),
                static_cast<long long>(step_), nll, static_cast<long long>(r.rows));
    std::fflush(stdout);
  }
  return nll;
}

void Trainer::check_replicas() {
  // Every rank's hash at its own index; one small collective gives every rank all of them.
  const auto P = static_cast<std::size_t>(comm_.size());
  comm_.set_phase("comparing parameter hashes", step_);
  std::fill(replica_hashes_.begin(), replica_hashes_.end(), 0);
  replica_hashes_[static_cast<std::size_t>(comm_.rank())] =
      XXH3_64bits(params_.data(), static_cast<std::size_t>(params_.size()) * sizeof(float));
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

Checkpoint Trainer::snapshot() const {
  Checkpoint ck;
  ck.step = step_;
  ck.epoch = epoch_;
  ck.samples_seen = samples_seen_;
  ck.world_size = comm_.size();
  ck.best_valid_nll = best_valid_;
  ck.config = to_yaml(c_);
  ck.model = p_.model;
  ck.norm = p_.norm;
  ck.params = params_;
  ck.optimizer = c_.optimizer.name;
  ck.optimizer_steps = optimizer_.steps();
  ck.cpu_level = to_string(p_.cpu.level);
  for (const auto& st : const_cast<Optimizer<float>&>(optimizer_).state()) ck.optimizer_state.emplace_back(st.name, *st.buffer);
  return ck;
}

void Trainer::save_step_checkpoint() {
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("writing a checkpoint (rank 0)", step_);
  const std::string dir = checkpoint_dir(c_.run.dir);
  const std::string path = checkpoint_name(dir, step_);
  comm_.collectively([&] {
    if (!comm_.is_root()) return;
    write_checkpoint(path, snapshot(), faults_);
    // Keep the newest keep_last step checkpoints (never the one just written).
    auto all = step_checkpoints(dir);
    const auto keep = static_cast<std::size_t>(c_.checkpoint.keep_last);
    for (std::size_t i = 0; i + keep < all.size(); ++i)
      if (all[i].second != path) fs::remove(all[i].second);
    write_metrics(json{{"kind", "checkpoint"}, {"step", step_}, {"epoch", epoch_}, {"path", path}}.dump());
  });
  last_checkpoint_step_ = step_;
  last_checkpoint_time_ = Clock::now();
}

void Trainer::save_best() {
  ScopedTimer t(interval_.t_other);
  comm_.set_phase("writing best.h5 (rank 0)", step_);
  const std::string path = checkpoint_dir(c_.run.dir) + "/best.h5";
  comm_.collectively([&] {
    if (!comm_.is_root()) return;
    write_checkpoint(path, snapshot(), faults_);
    write_metrics(json{{"kind", "checkpoint"}, {"step", step_}, {"epoch", epoch_}, {"path", path}, {"best", true}}.dump());
  });
}

RunEnd Trainer::run() {
  run_start_ = Clock::now();
  last_checkpoint_time_ = run_start_;
  interval_.start = run_start_;
  first_step_ = step_;
  first_samples_ = samples_seen_;
  const std::int64_t per_epoch = p_.batches.batches_per_epoch();
  std::int64_t validated_at = -1;

  while (step_ < total_steps_) {
    const std::int64_t e = step_ / per_epoch;
    {
      ScopedTimer t(interval_.t_io);
      comm_.set_phase("exchanging the epoch's rows", step_ + 1);
      data_.start_epoch(e);
    }
    for (Index b = step_ % per_epoch; b < per_epoch && step_ < total_steps_; ++b) {
      const StepOutcome out = train_step(b);
      if (!out.applied) on_nonfinite();
      ++step_;
      samples_seen_ += out.rows;
      if (faults_.drifts(step_, comm_.rank())) params_(0) += 1e-3f;
      if (c_.train.check_replicas_every && step_ % *c_.train.check_replicas_every == 0) check_replicas();
      log_train(out, step_ == total_steps_ || out.flags.stop);
      const bool epoch_done = b + 1 == per_epoch;
      if (epoch_done) epoch_ = e + 1;
      if (epoch_done && p_.valid_file) {
        validate_and_keep_best();
        validated_at = step_;
      }
      if (out.flags.stop) return stop_by_signal();
      if (checkpoint_due(epoch_done, out.flags)) checkpoint_unless_saved();
    }
  }
  if (p_.valid_file && validated_at != step_ && step_ > first_step_) validate_and_keep_best();
  checkpoint_unless_saved();
  write_summary();
  if (comm_.is_root()) {
    std::printf("done: %lld steps%s; model in '%s'\n", static_cast<long long>(step_),
                skipped_ > 0 ? fmt::format(" ({} skipped)", skipped_).c_str() : "",
                checkpoint_name(checkpoint_dir(c_.run.dir), step_).c_str());
    std::fflush(stdout);
  }
  return RunEnd::finished;
}

void Trainer::on_nonfinite() {
  if (c_.train.nonfinite == Nonfinite::stop) {
    // The parameters are still those before this step: save them, then stop.
    checkpoint_unless_saved();
    throw Error(Exit::failure,
                fmt::format("step {}: non-finite loss or gradient on some rank (train.nonfinite: "
                            "stop); the last good state is in '{}'",
                            step_ + 1, checkpoint_name(checkpoint_dir(c_.run.dir), step_)),
                true);
  }
  ++skipped_;
  if (comm_.is_root()) {
    std::printf("step %lld: non-finite loss or gradient on some rank: update skipped on every rank "
                "(train.nonfinite: skip)\n", static_cast<long long>(step_ + 1));
    write_metrics(json{{"kind", "nonfinite"}, {"step", step_ + 1}, {"action", to_string(Nonfinite::skip)}}.dump());
  }
}

void Trainer::validate_and_keep_best() {
  const double v = validate();
  if (std::isnan(best_valid_) || v < best_valid_) {
    best_valid_ = v;
    if (c_.checkpoint.keep_best) save_best();
  }
}

bool Trainer::checkpoint_due(bool epoch_done, const StepFlags& flags) const {
  return (c_.checkpoint.every_steps && step_ % *c_.checkpoint.every_steps == 0) ||
         (epoch_done && c_.checkpoint.every_epochs && epoch_ % *c_.checkpoint.every_epochs == 0) ||
         flags.checkpoint;
}

void Trainer::checkpoint_unless_saved() {
  if (last_checkpoint_step_ != step_) save_step_checkpoint();
}

RunEnd Trainer::stop_by_signal() {
  checkpoint_unless_saved();
  if (comm_.is_root()) {
    std::printf("stopped by a signal at step %lld: checkpoint '%s'; run the same command to resume (exit code 75)\n",
                static_cast<long long>(step_), checkpoint_name(checkpoint_dir(c_.run.dir), step_).c_str());
    std::fflush(stdout);
  }
  return RunEnd::stopped_by_signal;
}

namespace {

/// This process's peak resident memory (VmHWM), in MiB.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return 0;
}

}  // namespace

void Trainer::write_summary() {
  const double mine = peak_rss_mib();
  const std::vector<char> bytes = comm_.gather(&mine, sizeof mine);
  const double read = comm_.max(p_.read_seconds);
  if (!comm_.is_root()) return;
  std::vector<double> rss(bytes.size() / sizeof(double));
  std::memcpy(rss.data(), bytes.data(), bytes.size());
  const double seconds = seconds_since(run_start_);
  const std::int64_t steps = step_ - first_step_;
  json rec = {{"kind", "summary"}, {"step", step_}, {"steps_this_run", steps}, {"seconds", seconds},
              {"samples_per_s", seconds > 0 ? static_cast<double>(samples_seen_ - first_samples_) / seconds : 0.0},
              {"t_read", read}, {"peak_rss_mib", rss}, {"ranks", comm_.size()}};
  write_metrics(rec.dump());
  std::printf("summary: %lld steps in %.1f s, reading and normalising the data %.2f s; peak memory per rank %.0f MiB\n",
              static_cast<long long>(steps), seconds, read, *std::max_element(rss.begin(), rss.end()));
}

// ---- the command --------------------------------------------------------------------------------

namespace {

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw run_error("cannot write '{}'", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw run_error("cannot rename '{}' to '{}'", tmp, path);
}

}  // namespace

int train_command(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm,
                  const Faults& faults) {
  Prepared p = prepare(config_path, sets, comm);
  const ResumeDecision plan = decide_resume(p, comm);
  const Config& c = p.config;
  keep_stop_handlers(c.run.signals);
  if (plan.finished) {
    if (comm.is_root())
      std::printf("run '%s' already finished at step %lld (checkpoint '%s'); nothing to do\n", c.run.dir.c_str(),
                  static_cast<long long>(plan.checkpoint->step), plan.path.c_str());
    return 0;
  }

  read_data(p, plan.continuation(c), comm);

  // Everything is validated: now, and only now, write to run.dir.
  comm.collectively([&] {
    if (!comm.is_root()) return;
    std::error_code ec;
    fs::create_directories(checkpoint_dir(c.run.dir), ec);
    if (ec) throw input_error("{}run.dir: cannot create '{}': {}", c.where("run.dir"), checkpoint_dir(c.run.dir), ec.message());
    // Temporaries left by a crash in the middle of a checkpoint write.
    for (fs::directory_iterator it(checkpoint_dir(c.run.dir), ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() > 5 && name[0] == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0) fs::remove(it->path(), ec);
    }
    write_text_atomically(c.run.dir + "/config.yaml", to_yaml(c));
  });

  Trainer trainer(p, comm, plan.checkpoint ? &*plan.checkpoint : nullptr, faults);
  if (comm.is_root()) {
    const std::string level = to_string(p.cpu.level);
    trainer.write_metrics(json{{"kind", "start"}, {"step", trainer.step()}, {"ranks", comm.size()}, {"cpu", level},
                               {"cpu_reason", p.cpu.reason}, {"cpu_common", to_string(p.cpu.common)},
                               {"reduction_route", trainer.reduction_route()},
                               {"version", fmt::format("{} ({})", version(), git_describe())}}.dump());
    if (plan.checkpoint) {
      const Checkpoint& ck = *plan.checkpoint;
      trainer.write_metrics(json{{"kind", "resume"}, {"step", ck.step}, {"epoch", ck.epoch}, {"from", plan.path},
                                 {"world_size_then", ck.world_size}, {"world_size", comm.size()},
                                 {"cpu_then", ck.cpu_level.empty() ? json(nullptr) : json(ck.cpu_level)}, {"cpu", level},
                                 {"changed", plan.changed}}.dump());
      std::printf("resuming from '%s' at step %lld (saved by %lld ranks, now %d)\n", plan.path.c_str(),
                  static_cast<long long>(ck.step), static_cast<long long>(ck.world_size), comm.size());
    }
    std::printf("cpu: %s\n", p.cpu.describe(comm.size()).c_str());
    if (comm.size() > 1) std::printf("gradient sums: %s\n", trainer.reduction_route().c_str());
    if (plan.checkpoint && !p.cpu.replaced.empty()) {
      const std::string why = p.cpu.replaced == "unknown"
                                  ? std::string("does not record the level it was trained at (an older mdn)")
                                  : fmt::format("was trained at level {}, which not every rank can run", p.cpu.replaced);
      std::fprintf(stderr, "mdn: warning: the checkpoint %s: continuing at %s; the results differ in their last bits "
                   "from those of an uninterrupted run\n", why.c_str(), level.c_str());
    }
    std::fflush(stdout);
  }
  const RunEnd end = trainer.run();
  return end == RunEnd::finished ? 0 : static_cast<int>(Exit::checkpointed);
}

}  // namespace mdn
