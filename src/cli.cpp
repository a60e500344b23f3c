#include "cli.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "mdn/build_info.hpp"
#include "mdn/error.hpp"

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

}  // namespace

Outcome run(int argc, char** argv, Comm& world) {
  CLI::App app{"mdn: Mixture Density Network trainer, data-parallel over MPI.", "mdn"};
  app.set_version_flag("--version", build_report());
  app.footer(kFooter);

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version: the same on every rank
      if (world.is_root()) {
        if (dynamic_cast<const CLI::CallForVersion*>(&e) != nullptr) {
          std::fputs(e.what(), stdout);
        } else {
          std::fputs(app.help().c_str(), stdout);
        }
        std::fflush(stdout);
      }
      return {0, false};
    } catch (const CLI::ParseError& e) {  // argv is the same on every rank: so is the error
      throw Error(Exit::input, std::string(e.what()) + "\nRun 'mdn --help' for usage.", true);
    }
    if (app.get_subcommands().empty())
      throw Error(Exit::input, "no command given; run 'mdn --help' for usage", true);
    return {0, false};
  } catch (...) {
    const ErrorReport e = describe(std::current_exception());
    print_error(world, e);
    return {static_cast<int>(e.code), !e.collective && world.size() > 1};
  }
}

}  // namespace mdn::cli
