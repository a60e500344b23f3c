#include "mdn/resume.hpp"

#include <cstdio>
#include <filesystem>

#include "mdn/error.hpp"
#include "mdn/shuffle.hpp"

namespace mdn {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

/// Keys a resumed run must share with its checkpoint (README, "Resuming"): they decide the model,
/// the data, the optimizer state's shape and the sequence of batches.
const std::vector<std::string>& resume_fixed_keys() {
  static const std::vector<std::string> keys = {
      "model.hidden",     "model.activation",  "model.components", "model.sigma",    "model.sigma_min",
      "model.covariance", "data.x",            "data.y",           "data.normalize", "run.seed",
      "train.batch_size", "train.micro_batch", "train.drop_last", "optimizer.name"};
  return keys;
}

std::string key_value(const Config& c, const std::string& key) {
  for (const auto& k : keys())
    if (k.key == key) return k.get(c);
  return "";
}

/// Checks a checkpoint's config against this run's; returns the keys that changed (allowed).
json check_resume_config(const Config& now, const Checkpoint& ck, const std::string& ck_path) {
  Config then;
  try {
    then = parse_config(ck.config, ck_path + " (stored config)");
  } catch (const Error& e) {
    throw input_error("checkpoint '{}': its stored config is not valid: {}", ck_path, e.what());
  }
  for (const std::string& key : resume_fixed_keys()) {
    const std::string a = key_value(then, key);
    const std::string b = key_value(now, key);
    if (a != b)
      throw input_error("{}{}: is {} here but {} in the checkpoint '{}'; it cannot change when resuming "
                        "(use a new run.dir, or checkpoint.resume: never with an empty one)",
                        now.where(key), key, b, a, ck_path);
  }
  const bool momentum_then = then.optimizer.name == OptimizerKind::sgd && then.optimizer.momentum != 0;
  const bool momentum_now = now.optimizer.name == OptimizerKind::sgd && now.optimizer.momentum != 0;
  if (momentum_then != momentum_now)
    throw input_error("{}optimizer.momentum: turning sgd momentum {} when resuming from '{}' is not supported",
                      now.where("optimizer.momentum"), momentum_now ? "on" : "off", ck_path);
  json changed = json::object();
  for (const auto& k : keys()) {
    const std::string a = k.get(then);
    const std::string b = k.get(now);
    if (a != b) changed[k.key] = {{"from", a}, {"to", b}};
  }
  return changed;
}

/// The epochs' order and the training rows must be those the checkpoint's run used: the same
/// permutation scheme, and the same files (after resolving names and patterns) with the same rows,
/// in the same order. The first difference is named.
void check_resume_data(const Prepared& prep, const Checkpoint& ck, const std::string& ck_path) {
  const Config& c = prep.config;
  if (ck.permutation != IndexShuffle::kScheme)
    throw input_error("checkpoint '{}' comes from a run whose epochs were ordered by the {} permutation; this mdn "
                      "orders them by {} (README, \"Input data\"), so that run cannot continue with the same batches: "
                      "start a new run.dir (the checkpoint still works with mdn eval, predict and sample)",
                      ck_path, ck.permutation, IndexShuffle::kScheme);
  const auto now = prep.train_data.recorded();
  const auto& then = ck.train_files;
  const std::string where = c.where("data.train") + "data.train";
  for (std::size_t i = 0; i < std::max(now.size(), then.size()); ++i) {
    const auto file = [](const std::pair<std::string, std::int64_t>& f) {
      return fmt::format("'{}' ({} rows)", f.first, f.second);
    };
    if (i < now.size() && i < then.size() && now[i] == then[i]) continue;
    const std::string here = i < now.size() ? file(now[i]) : "none";
    const std::string there = i < then.size() ? file(then[i]) : "none";
    throw input_error("{}: file {} of {} is {} here but {} in the checkpoint '{}' (of {}); the training files cannot "
                      "change when resuming (use a new run.dir, or checkpoint.resume: never with an empty one)",
                      where, i + 1, now.size(), here, there, ck_path, then.size());
  }
}

void plan_resume(const Config& c, ResumeDecision& plan) {
  const std::string dir = checkpoint_dir(c.run.dir);
  const auto existing = step_checkpoints(dir);
  const std::string& mode = c.checkpoint.resume;
  const std::string where = c.where("checkpoint.resume") + "checkpoint.resume";
  if (mode == "never") {
    if (!existing.empty())
      throw input_error("{}: never, but '{}' holds step checkpoints ({} ...): use a new run.dir, remove them, "
                        "or resume with checkpoint.resume: auto",
                        where, dir, existing.back().second);
    return;
  }
  if (mode != "auto") {
    plan.path = mode;
    plan.checkpoint = read_checkpoint(mode);
    return;
  }
  for (auto it = existing.rbegin(); it != existing.rend(); ++it) {
    try {
      plan.checkpoint = read_checkpoint(it->second);
      plan.path = it->second;
      return;
    } catch (const Error& e) {
      plan.skipped.push_back(e.what());
    }
  }
  if (!plan.skipped.empty()) {
    std::string list;
    for (const auto& s : plan.skipped) list += "\n  " + s;
    throw input_error("{}: auto, but no checkpoint in '{}' is valid:{}", where, dir, list);
  }
}

}  // namespace

ResumeDecision decide_resume(const Prepared& prep, Comm& comm) {
  ResumeDecision d;
  comm.collectively([&] {
    const Config& c = prep.config;
    d.total_steps = total_steps(c, prep.batches);
    plan_resume(c, d);
    if (!d.checkpoint) return;
    const Checkpoint& ck = *d.checkpoint;
    if (ck.model.input_dim != prep.model.input_dim || ck.model.output_dim != prep.model.output_dim)
      throw input_error("checkpoint '{}' has {} inputs and {} outputs; '{}' has {} and {}", d.path,
                        ck.model.input_dim, ck.model.output_dim, prep.train_data.files.front().path, prep.model.input_dim,
                        prep.model.output_dim);
    check_resume_data(prep, ck, d.path);
    d.changed = check_resume_config(c, ck, d.path);
    d.finished = ck.step >= d.total_steps;
  });
  if (comm.is_root())
    for (const auto& s : d.skipped) std::fprintf(stderr, "mdn: warning: skipping a corrupt checkpoint: %s\n", s.c_str());
  return d;
}

Continuation ResumeDecision::continuation(const Config& c) const {
  Continuation from;
  if (!checkpoint) return from;
  from.resuming = true;
  if (c.data.normalize) from.norm = checkpoint->norm;
  from.cpu = parse_cpu_level(checkpoint->cpu_level);
  return from;
}

std::string describe(const ResumeDecision& d) {
  if (!d.checkpoint) return "a new run: no checkpoint to resume from";
  const Checkpoint& ck = *d.checkpoint;
  std::string keys;
  for (const auto& [key, v] : d.changed.items()) keys += (keys.empty() ? "" : ", ") + key;
  if (d.finished)
    return fmt::format("already finished at step {} (checkpoint '{}'): `mdn train` would do nothing", ck.step, d.path);
  return fmt::format("resumes from '{}' at step {} of {} (saved by {} rank{}){}", d.path, ck.step, d.total_steps,
                     ck.world_size, ck.world_size == 1 ? "" : "s", keys.empty() ? "" : "; changed keys: " + keys);
}

}  // namespace mdn
