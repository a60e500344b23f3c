#include "cli.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <optional>
#include <string>

#include "mdn/build_info.hpp"
#include "mdn/config.hpp"
#include "mdn/cpu.hpp"
#include "mdn/error.hpp"
#include "mdn/faults.hpp"
#include "mdn/resume.hpp"
#include "mdn/inference.hpp"
#include "mdn/prepare.hpp"
#include "mdn/run_lock.hpp"
#include "mdn/signals.hpp"
#include "mdn/trainer.hpp"

namespace mdn::cli {
namespace {

constexpr const char* kFooter = R"(Exit codes:
  0   success
  1   failure while running (I/O error, non-finite stop, accumulator overflow, watchdog timeout)
  2   the command, config or input files are wrong
  75  stopped by a signal after writing a checkpoint: run the same command again to resume

Run under MPI with `mpirun -n P mdn ...` or `srun mdn ...`.)";

void print_error(const Comm& world, const ErrorReport& e) {
  if (e.collective) {
    if (world.is_root()) std::fprintf(stderr, "mdn: error: %s\n", e.message.c_str());
  } else if (world.size() > 1) {
    std::fprintf(stderr, "mdn: error (rank %d of %d): %s\n", world.rank(), world.size(),
                 e.message.c_str());
  } else {
    std::fprintf(stderr, "mdn: error: %s\n", e.message.c_str());
  }
  std::fflush(stderr);
}

void print_root(const Comm& world, const std::string& text) {
  if (!world.is_root()) return;
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

// ---- commands -----------------------------------------------------------------------------------

struct CheckOptions {
  std::string config;
  std::vector<std::string> sets;
};

void add_config_options(CLI::App& cmd, CheckOptions& o) {
  cmd.add_option("config", o.config, "YAML config file")->required();
  cmd.add_option("--set", o.sets,
                 "Override a config key: --set optimizer.lr=0.01 (values are YAML: "
                 "--set model.hidden=[64,64]); repeatable")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
}

void add_cpu_option(CLI::App& cmd, std::string& cpu) {
  cmd.add_option("--cpu", cpu,
                 "Instruction-set level of the kernels, as run.cpu: auto (default: the checkpoint's level if every rank "
                 "supports it, else the best level all ranks support) or one of " + cpu_level_names())
      ->type_name("LEVEL");
}

void add_model_inputs(CLI::App& cmd, ModelInputs& o) {
  cmd.add_option("--checkpoint", o.checkpoint, "Checkpoint file")->required();
  cmd.add_option("--input", o.input, "HDF5 file(s) with the inputs: paths or glob patterns, rows in order")->required();
  cmd.add_option("--x", o.x, "Dataset of inputs (default: the checkpoint's data.x)");
  cmd.add_option("--output", o.output, "HDF5 file to write")->required();
  add_cpu_option(cmd, o.cpu);
}

void run_check(const CheckOptions& o, Comm& world) {
  // Everything `mdn train` would refuse, including the resume against the run directory's
  // checkpoints; the data is scanned even when the run is already finished.
  Prepared p = prepare(o.config, o.sets, world);
  const ResumeDecision resume = decide_resume(p, world);
  read_data(p, resume.continuation(p.config), world);
  std::string text = summary(p, world) + "resume     " + describe(resume) + "\n";
  if (world.is_root()) {  // looked at without writing anything
    const std::optional<std::string> holder = RunLock::holder(p.config.run.dir);
    text += "run lock   " + (holder ? "held by " + *holder + ": mdn train would refuse this run.dir now" : std::string("free")) + "\n";
  }
  print_root(world, text + "ok: the config and the data are valid for " + std::to_string(world.size()) +
                        (world.size() == 1 ? " rank\n" : " ranks\n"));
}

}  // namespace

// Long because it declares every command and option (a table for CLI11), then dispatches.
Outcome run(int argc, char** argv, Comm& world) {
  CLI::App app{"mdn: Mixture Density Network trainer, data-parallel over MPI.", "mdn"};
  app.set_version_flag("--version", build_report());
  app.footer(kFooter);
  app.require_subcommand(0, 1);

  CheckOptions check_opts;
  CLI::App* check = app.add_subcommand(
      "check", "Validate a config and its data (shapes, types, NaN scan, rows per rank for this "
               "number of ranks) and print a summary; writes nothing");
  add_config_options(*check, check_opts);

  CheckOptions train_opts;
  CLI::App* train = app.add_subcommand(
      "train", "Train: run the checks of `mdn check`, then train, writing metrics.jsonl, progress and "
               "checkpoints to run.dir; resumes from run.dir's newest checkpoint by default");
  add_config_options(*train, train_opts);

  EvalOptions eval_opts;
  CLI::App* eval = app.add_subcommand(
      "eval", "Mean negative log-likelihood per sample of a data file under a checkpoint, in the data's "
              "units, and how far its uncertainty can be trusted: CRPS, PIT histogram, calibration error and "
              "interval coverage per output, highest-density-region coverage jointly; distributed under mpirun, "
              "the same for any number of ranks");
  eval->add_option("--checkpoint", eval_opts.checkpoint, "Checkpoint file")->required();
  eval->add_option("--data", eval_opts.data, "HDF5 file(s) with inputs and targets: paths or glob patterns, rows in order")
      ->required();
  eval->add_option("--x", eval_opts.x, "Dataset of inputs (default: the checkpoint's data.x)");
  eval->add_option("--y", eval_opts.y, "Dataset of targets (default: the checkpoint's data.y)");
  add_cpu_option(*eval, eval_opts.cpu);
  eval->add_option("--hdr-samples", eval_opts.hdr_samples,
                   "Draws per row from the model for the coverage of its highest-density regions (default 1000; "
                   "0: not computed)");
  eval->add_flag("--json", eval_opts.json,
                 "One JSON object on stdout: nll, count, crps, pit_histogram, calibration_error, coverage, "
                 "hdr_coverage, checkpoint, data, step, cpu");

  PredictOptions predict_opts;
  CLI::App* predict = app.add_subcommand(
      "predict", "The mixture of every input row, in the data's units: pi (N, K), mu and sigma (N, K, L), and "
                 "the mixture's mean, variance (law of total variance) and mode (mean of the heaviest component), "
                 "(N, L), as float64 datasets of an HDF5 file");
  add_model_inputs(*predict, predict_opts);
  predict->add_option("--quantiles", predict_opts.quantiles,
                      "Levels in (0, 1) of the marginal quantiles to write as `quantiles` (N, Q, L), e.g. "
                      "0.05,0.5,0.95")
      ->delimiter(',');

  SampleOptions sample_opts;
  CLI::App* sample = app.add_subcommand(
      "sample", "Draws samples from the mixture of every input row into dataset `samples` (N, S, L), data "
                "units; identical for any number of ranks (counter-based in seed, row and sample)");
  add_model_inputs(*sample, sample_opts);
  sample->add_option("--samples", sample_opts.samples, "Samples per row (S)")->required();
  sample->add_option("--temperature", sample_opts.temperature,
                     "Mixing weights softmax(logits / T): T < 1 sharpens towards the heaviest component, T > 1 "
                     "flattens (default 1)");
  sample->add_option("--sigma-temperature", sample_opts.sigma_temperature,
                     "Multiplies every sigma by T2 (default 1)");
  sample->add_option("--seed", sample_opts.seed, "Random seed (default 0)");

  InspectOptions inspect_opts;
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Describe a checkpoint: format, architecture, step and epoch, ranks at save, config, checksum "
                 "status (exit 2 when it does not hold), parameter count");
  inspect->add_option("checkpoint", inspect_opts.checkpoint, "Checkpoint file")->required();
  inspect->add_flag("--json", inspect_opts.json, "One JSON object on stdout");

  bool markdown = false;
  CLI::App* keys_cmd = app.add_subcommand("keys", "List every config key with its type, default and meaning");
  keys_cmd->add_flag("--markdown", markdown, "As the Markdown table of the README");

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version: the same on every rank
      if (world.is_root()) {
        if (dynamic_cast<const CLI::CallForVersion*>(&e) != nullptr) {
          std::fputs(e.what(), stdout);
        } else {
          const CLI::App* sub = app.get_subcommands().empty() ? &app : app.get_subcommands().front();
          std::fputs(sub->help().c_str(), stdout);
        }
        std::fflush(stdout);
      }
      return {0, false};
    } catch (const CLI::ParseError& e) {  // argv is the same on every rank: so is the error
      throw Error(Exit::input, std::string(e.what()) + "\nRun 'mdn --help' for usage.", true);
    }
    if (app.get_subcommands().empty())
      throw Error(Exit::input, "no command given; run 'mdn --help' for usage", true);
    // Stop signals matter to `train` only (which narrows them to run.signals); every other command
    // gets the default actions back. The stall watchdog's default until a config says otherwise.
    if (!train->parsed()) keep_stop_handlers({});
    world.set_timeout(600.0);
    if (check->parsed()) run_check(check_opts, world);
    if (train->parsed()) {
      Faults faults;
      world.collectively([&] { faults = Faults::from_environment(); });  // a mistyped fault: exit 2, every rank
      if (faults.any() && world.is_root()) {
        std::fprintf(stderr, "mdn: warning: fault injection is active (MDN_FAULT: %s): this run fails on purpose\n",
                     faults.spec().c_str());
        std::fflush(stderr);
      }
      return {train_command(train_opts.config, train_opts.sets, world, faults), false};
    }
    if (eval->parsed()) return {eval_command(eval_opts, world), false};
    if (predict->parsed()) return {predict_command(predict_opts, world), false};
    if (sample->parsed()) return {sample_command(sample_opts, world), false};
    if (inspect->parsed()) return {inspect_command(inspect_opts, world), false};
    if (keys_cmd->parsed()) print_root(world, markdown ? keys_markdown() : keys_text());
    return {0, false};
  } catch (...) {
    const ErrorReport e = describe(std::current_exception());
    print_error(world, e);
    return {static_cast<int>(e.code), !e.collective && world.size() > 1};
  }
}

}  // namespace mdn::cli
