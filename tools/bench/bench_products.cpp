// Single-threaded SGEMM products at the shapes of the benchmark's training steps: mdn's own
// product at every instruction-set level this CPU runs, Eigen's GEMM kernel as mdn ran it before
// (fixed blocking, same levels), and the libraries a user might link instead, loaded with
// dlopen so that none of them is a dependency: OpenBLAS (cblas_sgemm), BLIS (bli_sgemm) and
// oneDNN (dnnl_sgemm). For each: GFLOP/s per case (medians over alternating rounds), whether
// the same call gives the same bits twice, and heap allocations per call after a warm-up.
//
//   build/tools/bench_products [--rounds N] [--json] [--detail CASE]
//
// --json: after the table, the same figures as one JSON line (the benchmark script reads both
// from one run, so that the figures it divides by are the ones it prints).
//
// --detail CASE: GFLOP/s of each product of the case's step, for every implementation.
//
// Cases (column-major C = op(A) op(B), the operand layouts of mdn's network; FLOPs 2 m n k):
//   small   micro-batch 256, layers 1 -> 32 -> 32 -> 15: forward, weight and input gradients
//   medium  micro-batch 512, layers 8 -> 256 -> 256 -> 256 -> 25
//   large   micro-batch 512, layers 8 -> 1024 -> 1024 -> 1024 -> 25
//   1024^3  one square product
// The libraries choose their kernels from the CPU they run on (OpenBLAS's DYNAMIC_ARCH, BLIS's
// configuration, oneDNN's JIT), so their bits differ between node types; mdn's depend on the
// binary and the level only (tests/test_cpu_cli.cpp).
#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mdn/cpu.hpp"
#include "mdn/gemm.hpp"
#include "mdn/model.hpp"

// Heap allocations, counted for the whole process (the dlopen'ed libraries included).
static std::atomic<long> g_allocations{0};
extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);
extern "C" void* malloc(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
extern "C" void* calloc(std::size_t a, std::size_t b) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(a, b);
}
extern "C" void* realloc(void* p, std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
extern "C" void* __libc_memalign(std::size_t, std::size_t);
extern "C" int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  *p = __libc_memalign(alignment, n);
  return *p == nullptr && n > 0 ? 12 /* ENOMEM */ : 0;
}
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, n);
}

namespace {

using mdn::Index;

struct Product {  // C (m x n, ldc = m) = op(A) op(B); ta: A is stored transposed (k x m), tb likewise
  Index m, n, k;
  bool ta, tb;
};

struct Case {
  std::string name;
  std::vector<Product> products;
};

/// The products of one training step: per layer the forward product, the weight gradient and
/// (but for the first layer) the input gradient, with mdn's layouts (network.cpp).
std::vector<Product> step(const std::vector<Index>& w, Index n) {
  std::vector<Product> ps;
  const std::size_t layers = w.size() - 1;
  for (std::size_t i = 0; i < layers; ++i) {
    const Index in = w[i], out = w[i + 1];
    if (i + 1 < layers) {
      ps.push_back({out, n, in, true, false});   // A (out, n) = W (out, in, row-major) X (in, n)
      ps.push_back({in, out, n, false, true});   // dW^T (in, out) = X (in, n) dZ^T
      if (i > 0) ps.push_back({in, n, out, false, false});  // dX (in, n) = W^T dZ
    } else {
      ps.push_back({n, out, in, true, false});   // head (n, O) = X^T W^T
      ps.push_back({in, out, n, false, false});  // dW^T (in, O) = X dH
      ps.push_back({in, n, out, false, true});   // dX (in, n) = W^T dH^T
    }
  }
  return ps;
}

double flops(const Case& c) {
  double f = 0;
  for (const Product& p : c.products) f += 2.0 * p.m * p.n * p.k;
  return f;
}

struct Buffers {
  std::vector<float> a, b, c;
};

/// One implementation: prepare(product) returns the call for it (workspace set up outside).
struct Impl {
  std::string name;
  std::function<std::function<void(const float*, const float*, float*)>(const Product&)> prepare;
};

// ---- libraries, through dlopen ----------------------------------------------------------------------

using cblas_sgemm_t = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                               float*, int);
using bli_sgemm_t = void (*)(int, int, long, long, long, const float*, const float*, long, long, const float*,
                             long, long, const float*, float*, long, long);
using dnnl_sgemm_t = int (*)(char, char, long, long, long, float, const float*, long, const float*, long, float,
                             float*, long);

void* open_first(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  return nullptr;
}

std::vector<Impl> libraries() {
  std::vector<Impl> out;
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("BLIS_NUM_THREADS", "1", 1);
  if (void* h = open_first({"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
                            "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", "libopenblas.so.0"})) {
    if (auto f = reinterpret_cast<cblas_sgemm_t>(dlsym(h, "cblas_sgemm"))) {
      if (auto threads = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"))) threads(1);
      out.push_back({"OpenBLAS", [f](const Product& p) {
                       return [f, p](const float* a, const float* b, float* c) {
                         // 102 = column-major; 111 = no transpose, 112 = transpose
                         f(102, p.ta ? 112 : 111, p.tb ? 112 : 111, static_cast<int>(p.m), static_cast<int>(p.n),
                           static_cast<int>(p.k), 1.0f, a, static_cast<int>(p.ta ? p.k : p.m), b,
                           static_cast<int>(p.tb ? p.n : p.k), 0.0f, c, static_cast<int>(p.m));
                       };
                     }});
    }
  }
  if (void* h = open_first({"/usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4", "libblis.so.4"})) {
    if (auto f = reinterpret_cast<bli_sgemm_t>(dlsym(h, "bli_sgemm"))) {
      out.push_back({"BLIS", [f](const Product& p) {
                       return [f, p](const float* a, const float* b, float* c) {
                         static const float one = 1.0f, zero = 0.0f;
                         // BLIS_NO_TRANSPOSE (0), the layouts given as row and column strides
                         f(0, 0, p.m, p.n, p.k, &one, a, p.ta ? p.k : 1, p.ta ? 1 : p.m, b, p.tb ? p.n : 1,
                           p.tb ? 1 : p.k, &zero, c, 1, p.m);
                       };
                     }});
    }
  }
  if (void* h = open_first({"libdnnl.so.2", "libdnnl.so.3"})) {
    if (auto f = reinterpret_cast<dnnl_sgemm_t>(dlsym(h, "dnnl_sgemm"))) {
      out.push_back({"oneDNN", [f](const Product& p) {
                       return [f, p](const float* a, const float* b, float* c) {
                         // Row-major: C^T (n x m) = op(B)^T op(A)^T.
                         f(p.tb ? 'T' : 'N', p.ta ? 'T' : 'N', p.n, p.m, p.k, 1.0f, b, p.tb ? p.n : p.k, a,
                           p.ta ? p.k : p.m, 0.0f, c, p.m);
                       };
                     }});
    }
  }
  return out;
}

// ---- mdn ----------------------------------------------------------------------------------------

Impl mdn_product(mdn::CpuLevel level) {
  return {std::string("mdn ") + mdn::to_string(level), [level](const Product& p) {
            auto g = std::make_shared<mdn::Gemm<float>>(level, p.m, p.n, p.k, false);
            return [g, p](const float* a, const float* b, float* c) {
              const mdn::Operand<const float> oa = p.ta ? mdn::Operand<const float>{a, p.m, p.k, p.k, true}
                                                        : mdn::Operand<const float>{a, p.m, p.k, p.m, false};
              const mdn::Operand<const float> ob = p.tb ? mdn::Operand<const float>{b, p.k, p.n, p.n, true}
                                                        : mdn::Operand<const float>{b, p.k, p.n, p.k, false};
              g->run(oa, ob, {c, p.m, p.n, p.m, false});
            };
          }};
}

Impl eigen_product(mdn::CpuLevel level) {
  return {std::string("Eigen ") + mdn::to_string(level), [level](const Product& p) {
            auto g = mdn::kernels<float>(level).reference_gemm(p.m, p.n, p.k, false);
            std::shared_ptr<mdn::GemmKernel<float>> shared(std::move(g));
            return [shared, p](const float* a, const float* b, float* c) {
              const mdn::Operand<const float> oa = p.ta ? mdn::Operand<const float>{a, p.m, p.k, p.k, true}
                                                        : mdn::Operand<const float>{a, p.m, p.k, p.m, false};
              const mdn::Operand<const float> ob = p.tb ? mdn::Operand<const float>{b, p.k, p.n, p.n, true}
                                                        : mdn::Operand<const float>{b, p.k, p.n, p.k, false};
              shared->run(oa, ob, {c, p.m, p.n, p.m, false});
            };
          }};
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7;
  bool as_json = false;
  std::string detail;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) as_json = true;
    else if (!std::strcmp(argv[i], "--detail") && i + 1 < argc) detail = argv[++i];
  }
  const std::vector<Case> cases = {{"small", step({1, 32, 32, 15}, 256)},
                                   {"medium", step({8, 256, 256, 256, 25}, 512)},
                                   {"large", step({8, 1024, 1024, 1024, 25}, 512)},
                                   {"1024^3", {{1024, 1024, 1024, false, false}}}};
  std::vector<Impl> impls;
  for (mdn::CpuLevel l : mdn::built_levels())
    if (mdn::cpu_supports(l)) impls.push_back(mdn_product(l));
  for (mdn::CpuLevel l : mdn::built_levels())
    if (mdn::cpu_supports(l)) impls.push_back(eigen_product(l));
  for (Impl& i : libraries()) impls.push_back(std::move(i));

  // Operands per case and product, filled once.
  std::srand(7);
  auto fill = [](std::vector<float>& v, std::size_t n) {
    v.resize(n);
    for (float& x : v) x = static_cast<float>(std::rand() % 2001 - 1000) * 1e-3f;
  };
  std::vector<std::vector<Buffers>> data(cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c)
    for (const Product& p : cases[c].products) {
      Buffers b;
      fill(b.a, static_cast<std::size_t>(p.m * p.k));
      fill(b.b, static_cast<std::size_t>(p.k * p.n));
      b.c.assign(static_cast<std::size_t>(p.m * p.n), 0.0f);
      data[c].push_back(std::move(b));
    }

  struct Result {
    std::vector<std::vector<double>> gflops;  // [case][round]
    bool deterministic = true;
    double allocations = 0;  // per call, after warm-up
  };
  std::vector<Result> results(impls.size());
  std::vector<std::vector<std::vector<std::function<void(const float*, const float*, float*)>>>> calls(impls.size());
  for (std::size_t i = 0; i < impls.size(); ++i) {
    results[i].gflops.assign(cases.size(), {});
    for (std::size_t c = 0; c < cases.size(); ++c) {
      calls[i].emplace_back();
      for (const Product& p : cases[c].products) calls[i][c].push_back(impls[i].prepare(p));
    }
  }
  auto run_case = [&](std::size_t i, std::size_t c) {
    for (std::size_t q = 0; q < cases[c].products.size(); ++q)
      calls[i][c][q](data[c][q].a.data(), data[c][q].b.data(), data[c][q].c.data());
  };
  // Warm-up, determinism (two calls, the same bits) and allocations per call.
  for (std::size_t i = 0; i < impls.size(); ++i) {
    long calls_made = 0;
    long allocs = 0;
    for (std::size_t c = 0; c < cases.size(); ++c) {
      run_case(i, c);
      std::vector<std::vector<float>> first;
      for (const Buffers& b : data[c]) first.push_back(b.c);
      const long before = g_allocations.load();
      run_case(i, c);
      allocs += g_allocations.load() - before;
      calls_made += static_cast<long>(cases[c].products.size());
      for (std::size_t q = 0; q < data[c].size(); ++q)
        if (std::memcmp(first[q].data(), data[c][q].c.data(), first[q].size() * sizeof(float)) != 0)
          results[i].deterministic = false;
    }
    results[i].allocations = static_cast<double>(allocs) / static_cast<double>(calls_made);
  }
  // Timed rounds: every implementation once per round, in rotating order.
  for (int r = 0; r < rounds; ++r)
    for (std::size_t j = 0; j < impls.size(); ++j) {
      const std::size_t i = (j + static_cast<std::size_t>(r)) % impls.size();
      for (std::size_t c = 0; c < cases.size(); ++c) {
        const double f = flops(cases[c]);
        int reps = 0;
        const double t0 = now();
        double t = 0;
        do {
          run_case(i, c);
          ++reps;
          t = now() - t0;
        } while (t < 0.15);
        results[i].gflops[c].push_back(f * reps / t / 1e9);
      }
    }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  if (!detail.empty()) {
    for (std::size_t c = 0; c < cases.size(); ++c) {
      if (cases[c].name != detail) continue;
      std::printf("%s: GFLOP/s of each product (m x n x k, A and B stored transposed or not), median of %d\n",
                  detail.c_str(), rounds);
      for (std::size_t q = 0; q < cases[c].products.size(); ++q) {
        const Product& p = cases[c].products[q];
        std::printf("%5lld x %5lld x %5lld %s%s %5.1f%% of FLOPs:", static_cast<long long>(p.m),
                    static_cast<long long>(p.n), static_cast<long long>(p.k), p.ta ? "T" : "N", p.tb ? "T" : "N",
                    100.0 * 2.0 * p.m * p.n * p.k / flops(cases[c]));
        for (std::size_t i = 0; i < impls.size(); ++i) {
          std::vector<double> g;
          for (int r = 0; r < rounds; ++r) {
            int reps = 0;
            const double t0 = now();
            double t = 0;
            do {
              calls[i][c][q](data[c][q].a.data(), data[c][q].b.data(), data[c][q].c.data());
              ++reps;
              t = now() - t0;
            } while (t < 0.05);
            g.push_back(2.0 * p.m * p.n * p.k * reps / t / 1e9);
          }
          std::printf("  %s %.0f", impls[i].name.c_str(), median(g));
        }
        std::printf("\n");
      }
    }
  }
  std::printf("single-threaded SGEMM, GFLOP/s (median of %d alternating rounds), %s\n", rounds,
              mdn::cpu_model_name().c_str());
  std::printf("%-18s", "product");
  for (const Case& c : cases) std::printf(" %8s", c.name.c_str());
  std::printf("  same bits twice  allocations/call\n");
  for (std::size_t i = 0; i < impls.size(); ++i) {
    std::printf("%-18s", impls[i].name.c_str());
    for (std::size_t c = 0; c < cases.size(); ++c) std::printf(" %8.1f", median(results[i].gflops[c]));
    std::printf("  %-15s  %.2f\n", results[i].deterministic ? "yes" : "NO", results[i].allocations);
  }
  if (as_json) {
    std::printf("{\"cpu\": \"%s\", \"products\": [", mdn::cpu_model_name().c_str());
    for (std::size_t i = 0; i < impls.size(); ++i) {
      std::printf("%s{\"name\": \"%s\", \"deterministic\": %s, \"allocations_per_call\": %.2f", i ? ", " : "",
                  impls[i].name.c_str(), results[i].deterministic ? "true" : "false", results[i].allocations);
      for (std::size_t c = 0; c < cases.size(); ++c)
        std::printf(", \"%s\": %.2f", cases[c].name.c_str(), median(results[i].gflops[c]));
      std::printf("}");
    }
    std::printf("]}\n");
  }
  return 0;
}
