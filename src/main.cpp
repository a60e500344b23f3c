// mdn's entry point: MPI up, one command, MPI down. All the work is in cli.cpp and the library.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli.hpp"
#include "mdn/h5.hpp"
#include "mdn/mpi_comm.hpp"
#include "mdn/signals.hpp"

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
  {
    std::unique_ptr<mdn::MpiComm> world;
    try {
      world = std::make_unique<mdn::MpiComm>(MPI_COMM_WORLD);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mdn: error: %s\n", e.what());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    outcome = mdn::cli::run(argc, argv, *world);
  }
  if (outcome.must_abort) MPI_Abort(MPI_COMM_WORLD, outcome.exit_code);
  MPI_Finalize();
  return outcome.exit_code;
}
