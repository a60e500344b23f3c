// Measures the cost of the step's gradient reduction schemes (README, "Exact reduction"):
//   fast  float sums of the rank's micro-batch gradients, one float MPI_SUM
//   (a)   per-step scale: one small MPI_MAX, quantise to int64, one int64 sum   <- mdn's choice
//         (on one node through shared memory; also timed through MPI alone)
//   (b)   fixed scale in 128-bit integers as two int64 limbs (no MAX, twice the bytes)
//   (c)   the previous step's scale (no MAX; a collective redo when it overflows): (a) without
//         its MAX, so its cost is (a) minus the latency of one small allreduce, printed too
//
//   mpirun -n P build/tools/bench_reduce [PARAMS] [MICRO_BATCHES_PER_RANK] [REPEATS]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mdn/mpi_comm.hpp"
#include "mdn/random.hpp"
#include "mdn/reducer.hpp"

using namespace mdn;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

ModelSpec spec_with(Index params) {
  // A hidden layer sized to reach about `params` parameters (D = 8, L = 2, K = 5).
  ModelSpec s;
  s.input_dim = 8;
  s.output_dim = 2;
  s.components = 5;
  // Parameters: w^2 + (8 + 1 + 1 + 25) w + 25 for hidden [w, w].
  const double b = 35;
  const int w = std::max(1, static_cast<int>((-b + std::sqrt(b * b + 4.0 * static_cast<double>(params))) / 2));
  s.hidden = {w, w};
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);  // as mdn's main does
  MPI_Init(&argc, &argv);
  {
    MpiComm comm(MPI_COMM_WORLD);
    comm.set_timeout(600);  // as mdn train: collectives polled against the watchdog's deadline
    const Index params = argc > 1 ? std::atol(argv[1]) : 140000;
    const Index J = argc > 2 ? std::atol(argv[2]) : 1;
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 50;
    const ModelSpec spec = spec_with(params);
    const Layout layout(spec);
    const Index n = layout.size();
    std::vector<Vec<float>> grads(static_cast<std::size_t>(J), Vec<float>(n));
    for (Index k = 0; k < J; ++k) {
      rng::Sequence r(7, rng::kTestData + static_cast<std::uint64_t>(k + J * comm.rank()));
      for (Index i = 0; i < n; ++i) grads[static_cast<std::size_t>(k)](i) = static_cast<float>(r.normal() * 1e-2);
    }
    Vec<float> mean(n);
    auto time = [&](auto&& f) {
      std::vector<double> t;
      for (int i = 0; i < repeats; ++i) {
        comm.barrier();
        const auto start = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return comm.max(median(t)) * 1e3;
    };
    auto run_reducer = [&](Reduction mode, bool shared_memory = true) {
      GradientReducer red(layout, mode, J, comm, mdn::best_built_level(), Faults::none(), {shared_memory, -1});
      return time([&] {
        for (Index k = 0; k < J; ++k) {
          std::copy_n(grads[static_cast<std::size_t>(k)].data(), n, red.gradient(k));
          red.record(k, 1.0, 128);
        }
        red.reduce(J, J * comm.size(), 128 * J * comm.size(), mean.data());
      });
    };
    const double t_fast = run_reducer(Reduction::fast);
    const double t_a = run_reducer(Reduction::exact);
    const double t_a_mpi = run_reducer(Reduction::exact, false);
    // (b): quantise at a fixed scale into two int64 limbs per element, one MPI_SUM.
    std::vector<std::int64_t> limbs(static_cast<std::size_t>(2 * n + 2));
    const double t_b = time([&] {
      std::fill(limbs.begin(), limbs.end(), 0);
      for (Index k = 0; k < J; ++k)
        for (Index i = 0; i < n; ++i) {
          __extension__ const __int128 q = static_cast<__int128>(std::nearbyint(std::ldexp(static_cast<double>(grads[static_cast<std::size_t>(k)](i)), 60)));
          limbs[static_cast<std::size_t>(2 * i)] += static_cast<std::int64_t>(q & 0xffffffff);
          limbs[static_cast<std::size_t>(2 * i + 1)] += static_cast<std::int64_t>(q >> 32);
        }
      comm.allreduce(limbs.data(), limbs.size(), ReduceOp::sum);
      for (Index i = 0; i < n; ++i)
        mean(i) = static_cast<float>(std::ldexp(static_cast<double>(limbs[static_cast<std::size_t>(2 * i)]) +
                                                    std::ldexp(static_cast<double>(limbs[static_cast<std::size_t>(2 * i + 1)]), 32), -60) / 128.0);
    });
    std::vector<double> small(static_cast<std::size_t>(layout.slots().size() + 4), 1.0);
    const double t_max = time([&] { comm.allreduce(small.data(), small.size(), ReduceOp::max); });
    if (comm.is_root()) {
      std::printf("gradient reduction, %lld parameters, %lld micro-batch(es) per rank, %d ranks (median of %d, ms)\n",
                  static_cast<long long>(n), static_cast<long long>(J), comm.size(), repeats);
      std::printf("  fast  float sum                         %8.3f\n", t_fast);
      std::printf("  (a)   per-step scale, int64 (chosen)     %8.3f   %+.0f%% vs fast\n", t_a, 100 * (t_a / t_fast - 1));
      std::printf("        the same through MPI alone         %8.3f   %+.0f%% vs fast (comm.shared_memory: false)\n", t_a_mpi,
                  100 * (t_a_mpi / t_fast - 1));
      std::printf("  (b)   fixed scale, 2 x int64 limbs       %8.3f   %+.0f%% vs fast\n", t_b, 100 * (t_b / t_fast - 1));
      std::printf("  (c)   previous scale: (a) - one MAX      %8.3f   (the MAX alone: %.1f us)\n", t_a - t_max, t_max * 1e3);
    }
  }
  MPI_Finalize();
  return 0;
}
