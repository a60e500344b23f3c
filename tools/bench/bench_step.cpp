// One training step of the benchmark's models, part by part, in one process: where the time of
// a step goes at each instruction-set level.
//
//   build/tools/bench_step [small|medium|large][:MICRO_BATCH] [LEVEL...]
//
// Prints, per level, the median time of the forward and backward pass of one micro-batch, of the
// forward pass alone, of the optimizer update, the gradient norm and the exact reduction's
// quantisation, and the pass's GFLOP/s (training FLOPs: 2 x 3 x weights per sample); then the
// whole step's speed against mdn's 1024^3 product at the same level, the two alternating.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mdn/clip.hpp"
#include "mdn/gemm.hpp"
#include "mdn/kernels.hpp"
#include "mdn/network.hpp"
#include "mdn/optimizer.hpp"

using namespace mdn;

int main(int argc, char** argv) {
  const std::string arg = argc > 1 ? argv[1] : "medium";
  const std::string which = arg.substr(0, arg.find(':'));
  ModelSpec s;
  Index n = 512;
  if (which == "small") {
    s.input_dim = 1, s.output_dim = 1, s.components = 5, s.hidden = {32, 32}, n = 256;
  } else if (which == "medium" || which == "large") {
    s.input_dim = 8, s.output_dim = 2, s.components = 5;
    s.hidden = which == "large" ? std::vector<int>{1024, 1024, 1024} : std::vector<int>{256, 256, 256};
  } else {
    std::fprintf(stderr, "bench_step: the case is small, medium or large, not '%s'\n", which.c_str());
    return 2;
  }
  // The micro-batch, to see how the step's speed follows its activations' size against the caches.
  if (arg.size() > which.size()) {
    const std::string micro = arg.substr(which.size() + 1);
    char* end = nullptr;
    const long v = std::strtol(micro.c_str(), &end, 10);
    if (micro.empty() || *end != '\0' || v < 1 || v > (1 << 20)) {
      std::fprintf(stderr, "bench_step: the micro-batch after '%s:' must be a whole number from 1 to 1048576, not '%s'\n",
                   which.c_str(), micro.c_str());
      return 2;
    }
    n = v;
  }
  std::vector<CpuLevel> levels;
  for (int i = 2; i < argc; ++i) {
    const auto l = parse_cpu_level(argv[i]);
    if (!l || !is_built(*l) || !cpu_supports(*l)) {
      std::fprintf(stderr, "bench_step: level '%s' is not built or not supported here\n", argv[i]);
      return 2;
    }
    levels.push_back(*l);
  }
  if (levels.empty())
    for (CpuLevel l : built_levels())
      if (cpu_supports(l)) levels.push_back(l);
  double flops = 0;
  for (int i = 0; i < s.layers(); ++i) flops += 6.0 * s.layer_in(i) * s.layer_out(i) * static_cast<double>(n);
  std::printf("%s: D=%d L=%d K=%d hidden", which.c_str(), s.input_dim, s.output_dim, s.components);
  for (int w : s.hidden) std::printf(" %d", w);
  std::printf(", micro-batch %lld, %.1f MFLOP per pass; %s\n", static_cast<long long>(n), flops / 1e6,
              cpu_model_name().c_str());
  for (CpuLevel level : levels) {
    Network<float> net(level, s, n);
    const Layout& layout = net.layout();
    Vec<float> p(layout.size()), g(layout.size());
    initialize(p.data(), layout, 1);
    const Mat<float> x = Mat<float>::Random(s.input_dim, n), y = Mat<float>::Random(s.output_dim, n);
    Optimizer<float> opt(OptimizerSpec{}, layout, level);
    const Kernels<float>& k = kernels<float>(level);
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    auto median_ms = [&median](auto f) {
      for (int i = 0; i < 3; ++i) f();
      std::vector<double> t;
      for (int r = 0; r < 41; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      return median(t);
    };
    const double pass = median_ms([&] { net.loss_and_grad(p.data(), x, y, g.data()); });
    const double fwd = median_ms([&] { net.loss(p.data(), x, y); });
    const double adam = median_ms([&] { opt.step(p.data(), g.data(), 1e-12); });
    const double norm = median_ms([&] { l2_norm(level, g.data(), g.size()); });
    const float* held[1] = {g.data()};
    // The exact reduction on one rank: the maximum, then each value rounded to the quantum and
    // divided in one pass (round_trip), into the mean gradient.
    Vec<float> mean(layout.size());
    const double quant = median_ms([&] {
      k.max_abs(g.data(), g.size());
      k.round_trip(held, 1, 0, mean.data(), g.size(), 1024.0, 1.0 / 1024.0);
    });
    // The step's work in sequence, as the trainer does it for one micro-batch per step: the caches
    // hold what the reduction and the optimizer touched last, not the network's buffers.
    const auto whole_step = [&] {
      net.loss_and_grad(p.data(), x, y, g.data());
      k.max_abs(g.data(), g.size());
      k.round_trip(held, 1, 0, mean.data(), g.size(), 1024.0, 1.0 / 1024.0);
      opt.step(p.data(), mean.data(), 1e-12);
    };
    const double step = median_ms(whole_step);
    std::printf("%-10s forward+backward %7.3f ms (%6.1f GFLOP/s)  forward %7.3f ms  adam %6.3f ms  norm %6.3f ms  "
                "quantise %6.3f ms  whole step %7.3f ms (%6.1f GFLOP/s)\n",
                to_string(level), pass, flops / pass / 1e6, fwd, adam, norm, quant, step, flops / step / 1e6);
    // The step against mdn's 1024^3 product at the same level, alternating in this process: a
    // group of steps, then products for about as long, 21 times. This machine's speed drifts
    // between minutes (and a virtual machine's between seconds); the ratio of neighbours does not.
    const Index big = 1024;
    const Mat<float> ga = Mat<float>::Random(big, big), gb = Mat<float>::Random(big, big);
    Mat<float> gc(big, big);
    Gemm<float> gemm(level, big, big, big, false);
    const double gemm_flops = 2.0 * static_cast<double>(big * big * big);
    const auto seconds = [](auto f, int times) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < times; ++i) f();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / times;
    };
    const auto product = [&] { gemm.run(operand(ga), operand(gb), mutable_operand(gc)); };
    const int products = 3;
    const int steps = std::max(1, static_cast<int>(products * seconds(product, 1) / (step / 1e3) + 0.5));
    std::vector<double> gemm_rate, step_rate, ratio;
    for (int i = 0; i < 21; ++i) {
      gemm_rate.push_back(gemm_flops / seconds(product, products) / 1e9);
      step_rate.push_back(flops / seconds(whole_step, steps) / 1e9);
      ratio.push_back(step_rate.back() / gemm_rate.back());
    }
    std::sort(ratio.begin(), ratio.end());
    std::printf("%-10s the whole step against the 1024^3 product, alternating (21 rounds of %d steps and %d "
                "products): step %.1f GFLOP/s, product %.1f GFLOP/s, step/product %.3f (quartiles %.3f, %.3f)\n",
                to_string(level), steps, products, median(step_rate), median(gemm_rate), ratio[10], ratio[5],
                ratio[15]);
  }
}
