// Single-core SGEMM speed with mdn's matrix product (Eigen's kernel, mdn's blocking): the peak
// the benchmark compares training against. Under `mpirun -n 2` the ranks multiply at the same
// time, which gives the two-core ceiling (shared caches, memory bandwidth and clocks).
//
//   [mpirun -n P] build/tools/bench_gemm [SIZE] [SECONDS] [LEVEL]   prints GFLOP/s per rank and in sum
//
// LEVEL: the kernels' instruction-set level (default: the best this CPU runs).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
  const auto level = argc > 3 ? mdn::parse_cpu_level(argv[3]) : mdn::best_built_level();
  if (!level || !mdn::is_built(*level) || !mdn::cpu_supports(*level)) {
    std::fprintf(stderr, "bench_gemm: level '%s' is not built or not supported here\n", argv[3]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  mdn::Gemm<float> gemm(*level, n, n, n, false);
  std::vector<double> rates;
  MPI_Barrier(MPI_COMM_WORLD);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const auto t0 = std::chrono::steady_clock::now();
    gemm.run(mdn::operand(a), mdn::operand(b), mdn::mutable_operand(c));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * static_cast<double>(n) * n * n / dt / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  double mine = rates[rates.size() / 2];
  std::vector<double> all(static_cast<std::size_t>(size));
  MPI_Gather(&mine, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    double sum = 0;
    for (double r : all) sum += r;
    std::printf("{\"size\": %lld, \"ranks\": %d, \"level\": \"%s\", \"gflops_per_rank\": [", static_cast<long long>(n), size,
                mdn::to_string(*level));
    for (int r = 0; r < size; ++r) std::printf("%s%.2f", r ? ", " : "", all[static_cast<std::size_t>(r)]);
    std::printf("], \"gflops_sum\": %.2f, \"check\": %g}\n", sum, static_cast<double>(c(0, 0)));
  }
  MPI_Finalize();
  return 0;
}
