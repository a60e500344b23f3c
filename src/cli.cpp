#include "cli.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "mdn/build_info.hpp"
#include "mdn/config.hpp"
#include "mdn/error.hpp"
#include "mdn/prepare.hpp"
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

void run_check(const CheckOptions& o, Comm& world) {
  const Prepared p = prepare(o.config, o.sets, world);
  const std::string text = summary(p, world);
  print_root(world, text + "ok: the config and the data are valid for " + std::to_string(world.size()) +
                        (world.size() == 1 ? " rank\n" : " ranks\n"));
}

}  // namespace

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
    if (check->parsed()) run_check(check_opts, world);
    if (train->parsed()) return {train_command(train_opts.config, train_opts.sets, world), false};
    if (keys_cmd->parsed()) print_root(world, markdown ? keys_markdown() : keys_text());
    return {0, false};
  } catch (...) {
    const ErrorReport e = describe(std::current_exception());
    print_error(world, e);
    return {static_cast<int>(e.code), !e.collective && world.size() > 1};
  }
}

}  // namespace mdn::cli
