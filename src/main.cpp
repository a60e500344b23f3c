// mdn's entry point: MPI up, one command, MPI down. All the work is in cli.cpp and the library.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli.hpp"
#include "mdn/h5.hpp"
#include "mdn/mpi_comm.hpp"
#include "mdn/signals.hpp"

namespace {

/// Writes "CODE\n" to `path` whole or not at all (a temporary, then a rename); a failure is
/// reported and does not change the exit code.
void write_exit_file(const std::string& path, int code) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f != nullptr && std::fprintf(f, "%d\n", code) > 0;
  if (f != nullptr && std::fclose(f) != 0) ok = false;
  if (ok && std::rename(tmp.c_str(), path.c_str()) == 0) return;
  std::remove(tmp.c_str());
  std::fprintf(stderr, "mdn: warning: cannot write the exit code to '%s' (MDN_EXIT_FILE)\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // First thing: a stop signal (SLURM's warning before the time limit) only sets a flag, even
  // when it arrives during start-up. The config may narrow the set later (run.signals).
  mdn::install_stop_handlers({"USR1", "USR2", "TERM"});
  // mdn's collectives are non-blocking (for the stall watchdog). OpenMPI's default algorithm for
  // a non-blocking allreduce is 2-2.5x slower than its blocking one on large buffers; the ring
  // is as fast. A user's own setting wins.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "mdn: error: MPI_Init_thread failed\n");
    return 1;
  }
  mdn::h5::quiet();

  mdn::cli::Outcome outcome;
  int rank = 0;
  {
    std::unique_ptr<mdn::MpiComm> world;
    try {
      world = std::make_unique<mdn::MpiComm>(MPI_COMM_WORLD);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mdn: error: %s\n", e.what());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rank = world->rank();
    outcome = mdn::cli::run(argc, argv, *world);
  }
  if (outcome.must_abort) MPI_Abort(MPI_COMM_WORLD, outcome.exit_code);
  MPI_Finalize();
  // Some launchers lose the ranks' exit code now and then (MPICH's Hydra under SLURM returned 0
  // for ranks that all exited with 75): job scripts read it from this file instead.
  if (const char* path = std::getenv("MDN_EXIT_FILE"); path != nullptr && *path != '\0' && rank == 0)
    write_exit_file(path, outcome.exit_code);
  return outcome.exit_code;
}
