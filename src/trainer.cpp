#include "mdn/trainer.hpp"

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "mdn/build_info.hpp"
#include "mdn/error.hpp"
#include "mdn/resume.hpp"
#include "mdn/run_lock.hpp"
#include "mdn/run_loop.hpp"
#include "mdn/signals.hpp"

namespace mdn {

namespace fs = std::filesystem;
using json = nlohmann::json;

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

/// Rank 0's records; the others keep none.
class NoMetrics final : public MetricsSink {
 public:
  void write(const json&) override {}
};

/// Everything is validated: now, and only now, write to run.dir — its checkpoints directory
/// (without the temporaries of a write that crashed), the resolved config, and metrics.jsonl.
/// Collective; returns rank 0's metrics file (the others' discard).
std::unique_ptr<MetricsSink> open_run_dir(const Config& c, Comm& comm) {
  std::unique_ptr<MetricsSink> metrics;
  comm.collectively([&] {
    if (!comm.is_root()) return;
    std::error_code ec;
    fs::create_directories(checkpoint_dir(c.run.dir), ec);
    if (ec) throw input_error("{}run.dir: cannot create '{}': {}", c.where("run.dir"), checkpoint_dir(c.run.dir), ec.message());
    for (fs::directory_iterator it(checkpoint_dir(c.run.dir), ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() > 5 && name[0] == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0) fs::remove(it->path(), ec);
    }
    write_text_atomically(c.run.dir + "/config.yaml", to_yaml(c));
    metrics = std::make_unique<MetricsFile>(c.run.dir);
  });
  if (!metrics) metrics = std::make_unique<NoMetrics>();
  return metrics;
}

/// Rank 0: the start (and resume) records, and what the run is about to do.
void announce(const Prepared& p, const ResumeDecision& plan, const RunLoop& loop, MetricsSink& metrics, Comm& comm) {
  if (!comm.is_root()) return;
  const std::string level = to_string(p.cpu.level);
  metrics.write(json{{"kind", "start"}, {"step", loop.step()}, {"ranks", comm.size()}, {"cpu", level},
                     {"cpu_reason", p.cpu.reason}, {"cpu_common", to_string(p.cpu.common)},
                     {"reduction_route", loop.reduction_route()},
                     {"version", fmt::format("{} ({})", version(), git_describe())}});
  if (plan.checkpoint) {
    const Checkpoint& ck = *plan.checkpoint;
    metrics.write(json{{"kind", "resume"}, {"step", ck.step}, {"epoch", ck.epoch}, {"from", plan.path},
                       {"world_size_then", ck.world_size}, {"world_size", comm.size()},
                       {"cpu_then", ck.cpu_level.empty() ? json(nullptr) : json(ck.cpu_level)}, {"cpu", level},
                       {"changed", plan.changed}});
    std::printf("resuming from '%s' at step %lld (saved by %lld ranks, now %d)\n", plan.path.c_str(),
                static_cast<long long>(ck.step), static_cast<long long>(ck.world_size), comm.size());
  }
  std::printf("cpu: %s\n", p.cpu.describe(comm.size()).c_str());
  if (comm.size() > 1) std::printf("gradient sums: %s\n", loop.reduction_route().c_str());
  if (plan.checkpoint && !p.cpu.replaced.empty()) {
    const std::string why = p.cpu.replaced == "unknown"
                                ? std::string("does not record the level it was trained at (an older mdn)")
                                : fmt::format("was trained at level {}, which not every rank can run", p.cpu.replaced);
    std::fprintf(stderr, "mdn: warning: the checkpoint %s: continuing at %s; the results differ in their last bits "
                 "from those of an uninterrupted run\n", why.c_str(), level.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int train_command(const std::string& config_path, const std::vector<std::string>& sets, Comm& comm,
                  const Faults& faults) {
  Prepared p = prepare(config_path, sets, comm);
  // One training per run directory: rank 0 holds the lock until this function returns.
  std::unique_ptr<RunLock> lock;
  comm.collectively([&] {
    if (comm.is_root()) lock = std::make_unique<RunLock>(p.config.run.dir, p.config.where("run.dir") + "run.dir");
  });
  if (lock && !lock->warning().empty()) std::fprintf(stderr, "mdn: warning: %s\n", lock->warning().c_str());
  // Until open_run_dir, an error (bad input found by the resume decision or the data scan) leaves
  // the run directory as it was: what taking the lock created goes.
  struct UndoOnError {
    RunLock* lock;
    ~UndoOnError() {
      if (lock != nullptr && std::uncaught_exceptions() > 0) lock->remove_created();
    }
  } undo{lock.get()};
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
  const std::unique_ptr<MetricsSink> metrics = open_run_dir(c, comm);
  undo.lock = nullptr;
  CheckpointFiles checkpoints(c.run.dir, c.checkpoint.keep_last, faults);
  RunLoop loop(p, comm, plan.checkpoint ? &*plan.checkpoint : nullptr, *metrics, checkpoints, faults);
  announce(p, plan, loop, *metrics, comm);
  return loop.run() == RunEnd::finished ? 0 : static_cast<int>(Exit::checkpointed);
}

}  // namespace mdn
