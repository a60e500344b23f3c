// Single-core SGEMM speed with mdn's matrix product (Eigen's kernel, mdn's blocking): the peak
// the benchmark compares training against. Under `mpirun -n 2` the ranks multiply at the same
// time, which gives the two-core ceiling (shared caches, memory bandwidth and clocks).
//
//   [mpirun -n P] build/tools/bench_gemm [SIZE] [SECONDS] [LEVEL] [lockstep]
//
// prints GFLOP/s per rank and in sum: each rank's median over its products (what a core does
// when nothing disturbs it), and its work over the wall time (`gflops_wall_sum`: with every
// pause). LEVEL: the kernels' instruction-set level (default, or `auto`: the best this CPU runs).
// `lockstep`: the ranks meet in a barrier after every product, as data-parallel training does
// after every step; with a product of about a step's length (512^3: a few ms), the wall-time
// figure over one rank's is the most any synchronous trainer can scale to on these cores: a pause
// of either core (the OS, the hypervisor) holds both.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "mdn/gemm.hpp"
#include "mdn/model.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const mdn::Index n = argc > 1 ? std::atol(argv[1]) : 1024;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  const mdn::Mat<float> a = mdn::Mat<float>::Random(n, n), b = mdn::Mat<float>::Random(n, n);
  mdn::Mat<float> c(n, n);
  const bool auto_level = argc <= 3 || std::string(argv[3]) == "auto";
  const auto level = auto_level ? std::optional<mdn::CpuLevel>(mdn::best_built_level()) : mdn::parse_cpu_level(argv[3]);
  const bool lockstep = argc > 4 && std::string(argv[4]) == "lockstep";
  if (!level || !mdn::is_built(*level) || !mdn::cpu_supports(*level)) {
    std::fprintf(stderr, "bench_gemm: level '%s' is not built or not supported here\n", argv[3]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  mdn::Gemm<float> gemm(*level, n, n, n, false);
  std::vector<double> rates;
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  // Every rank runs as many products as rank 0 decides (a lock-step job ends together).
  for (int go = 1; go != 0;) {
    const auto t0 = std::chrono::steady_clock::now();
    gemm.run(mdn::operand(a), mdn::operand(b), mdn::mutable_operand(c));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(flops / dt / 1e9);
    if (lockstep) {
      go = rank == 0 && std::chrono::steady_clock::now() < end ? 1 : 0;
      MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);  // the barrier, and the decision
    } else {
      go = std::chrono::steady_clock::now() < end ? 1 : 0;
    }
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(rates.begin(), rates.end());
  const double mine[2] = {static_cast<double>(rates.size()) * flops / wall / 1e9, rates[rates.size() / 2]};
  std::vector<double> all(2 * static_cast<std::size_t>(size));
  MPI_Gather(mine, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    double sum = 0, wall_sum = 0;
    for (int r = 0; r < size; ++r) {
      wall_sum += all[2 * static_cast<std::size_t>(r)];
      sum += all[2 * static_cast<std::size_t>(r) + 1];
    }
    std::printf("{\"size\": %lld, \"ranks\": %d, \"level\": \"%s\", \"lockstep\": %s, \"gflops_per_rank\": [",
                static_cast<long long>(n), size, mdn::to_string(*level), lockstep ? "true" : "false");
    for (int r = 0; r < size; ++r) std::printf("%s%.2f", r ? ", " : "", all[2 * static_cast<std::size_t>(r) + 1]);
    std::printf("], \"gflops_sum\": %.2f, \"gflops_wall_sum\": %.2f, \"check\": %g}\n", sum, wall_sum,
                static_cast<double>(c(0, 0)));
  }
  MPI_Finalize();
  return 0;
}
