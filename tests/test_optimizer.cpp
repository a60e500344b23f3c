// Optimizer, schedule and clipping steps against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "mdn/clip.hpp"
#include "mdn/optimizer.hpp"
#include "mdn/schedule.hpp"
#include "support/levels.hpp"

namespace mdn {
namespace {

// D = L = K = 1, no hidden layer: one layer, weight (3, 1) in [0, 3) decays, bias (3) in [3, 6)
// does not.
const ModelSpec& tiny_spec() {
  static const ModelSpec spec = [] {
    ModelSpec s;
    s.hidden = {};
    return s;
  }();
  return spec;
}

Vec<double> vec6(double a, double b, double c, double d, double e, double f) {
  Vec<double> v(6);
  v << a, b, c, d, e, f;
  return v;
}

TEST(Sgd, PlainStepIsPMinusLrG) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;
    spec.kind = OptimizerKind::sgd;
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(1, 2, 3, 4, 5, 6);
    const Vec<double> g = vec6(0.5, -1, 2, 0, 1, -0.5);
    opt.step(p.data(), g.data(), 0.1);
    EXPECT_EQ(p, vec6(0.95, 2.1, 2.8, 4, 4.9, 6.05));
    EXPECT_EQ(opt.steps(), 1);
    EXPECT_TRUE(opt.state().empty());
  }
}

TEST(Sgd, MomentumWithWeightDecayOnWeightsOnly) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;
    spec.kind = OptimizerKind::sgd;
    spec.momentum = 0.9;
    spec.weight_decay = 0.01;
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(1, 0, 0, 4, 0, 0);
    opt.step(p.data(), vec6(0.5, 0, 0, 0, 0, 0).data(), 0.1);
    // weight: g' = 0.5 + 0.01*1 = 0.51, v = 0.51, p = 1 - 0.051 = 0.949; bias: g = 0, no decay.
    EXPECT_NEAR(p(0), 0.949, 1e-15);
    EXPECT_EQ(p(3), 4.0);
    opt.step(p.data(), vec6(0.2, 0, 0, 0.3, 0, 0).data(), 0.1);
    // weight: g' = 0.2 + 0.01*0.949 = 0.20949, v = 0.9*0.51 + 0.20949 = 0.66849,
    //         p = 0.949 - 0.066849 = 0.882151; bias: v = 0.9*0 + 0.3, p = 4 - 0.03 = 3.97.
    EXPECT_NEAR(p(0), 0.882151, 1e-15);
    EXPECT_NEAR(p(3), 3.97, 1e-15);
    ASSERT_EQ(opt.state().size(), 1u);
    EXPECT_EQ(opt.state()[0].name, "momentum");
    EXPECT_NEAR((*opt.state()[0].buffer)(0), 0.66849, 1e-15);
  }
}

TEST(Sgd, Nesterov) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;
    spec.kind = OptimizerKind::sgd;
    spec.momentum = 0.9;
    spec.nesterov = true;
    spec.weight_decay = 0.01;
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(1, 0, 0, 0, 0, 0);
    opt.step(p.data(), vec6(0.5, 0, 0, 0, 0, 0).data(), 0.1);
    // g' = 0.51, v = 0.51, p = 1 - 0.1*(0.51 + 0.9*0.51) = 0.9031
    EXPECT_NEAR(p(0), 0.9031, 1e-15);
    opt.step(p.data(), vec6(0.2, 0, 0, 0, 0, 0).data(), 0.1);
    // g' = 0.2 + 0.009031 = 0.209031, v = 0.459 + 0.209031 = 0.668031,
    // p = 0.9031 - 0.1*(0.209031 + 0.9*0.668031) = 0.82207411
    EXPECT_NEAR(p(0), 0.82207411, 1e-15);
  }
}

TEST(Adam, TwoStepsByHand) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;  // adam, 0.9, 0.999, 1e-8
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(1, -1, 0, 2, 0, 0);
    const double lr = 0.01;
    opt.step(p.data(), vec6(0.5, -3, 0, 1e-4, 0, 0).data(), lr);
    // First step: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps).
    EXPECT_NEAR(p(0), 1 - lr * 0.5 / (0.5 + 1e-8), 1e-15);
    EXPECT_NEAR(p(1), -1 + lr * 3 / (3 + 1e-8), 1e-15);
    EXPECT_EQ(p(2), 0.0);  // zero gradient: m = 0
    EXPECT_NEAR(p(3), 2 - lr * 1e-4 / (1e-4 + 1e-8), 1e-15);
    const double p0 = p(0);
    opt.step(p.data(), vec6(0.2, 0, 0, 0, 0, 0).data(), lr);
    const double m = 0.9 * (0.1 * 0.5) + 0.1 * 0.2;
    const double v = 0.999 * (0.001 * 0.25) + 0.001 * 0.04;
    const double bc1 = 1 - 0.9 * 0.9;
    const double bc2 = 1 - 0.999 * 0.999;
    EXPECT_NEAR(p(0), p0 - (lr / bc1) * m / (std::sqrt(v) / std::sqrt(bc2) + 1e-8), 1e-15);
    EXPECT_EQ(opt.state().size(), 2u);
    EXPECT_EQ(opt.state()[0].name, "exp_avg");
    EXPECT_NEAR((*opt.state()[0].buffer)(0), m, 1e-15 * m);
    EXPECT_EQ(opt.state()[1].name, "exp_avg_sq");
    EXPECT_NEAR((*opt.state()[1].buffer)(0), v, 1e-15 * v);
  }
}

TEST(Adam, L2DecayIsAddedToTheGradientOfWeightsOnly) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;
    spec.weight_decay = 0.5;
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(1, 0, 0, 1, 0, 0);
    // Zero gradient: the weight moves (its gradient is wd*p = 0.5), the bias does not.
    opt.step(p.data(), Vec<double>::Zero(6).eval().data(), 0.01);
    EXPECT_NEAR(p(0), 1 - 0.01 * 0.5 / (0.5 + 1e-8), 1e-15);
    EXPECT_EQ(p(3), 1.0);
  }
}

TEST(AdamW, DecayIsDecoupled) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    const Layout layout(tiny_spec());
    OptimizerSpec spec;
    spec.kind = OptimizerKind::adamw;
    spec.weight_decay = 0.1;
    Optimizer<double> opt(spec, layout, level);
    Vec<double> p = vec6(2, 0, 0, 2, 0, 0);
    opt.step(p.data(), vec6(0.5, 0, 0, 0.5, 0, 0).data(), 0.01);
    // weight: p = 2 * (1 - 0.01*0.1) = 1.998, then the Adam step -0.01 * 0.5/(0.5 + eps).
    EXPECT_NEAR(p(0), 1.998 - 0.01 * 0.5 / (0.5 + 1e-8), 1e-15);
    // bias: no decay.
    EXPECT_NEAR(p(3), 2 - 0.01 * 0.5 / (0.5 + 1e-8), 1e-15);
  }
}

TEST(Schedule, ConstantAndWarmup) {
  ScheduleSpec s;
  EXPECT_EQ(learning_rate(s, 0.1, 0, 100), 0.1);
  EXPECT_EQ(learning_rate(s, 0.1, 99, 100), 0.1);
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 0, 100), 0.025);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 2, 100), 0.075);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 3, 100), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 4, 100), 0.1);
}

TEST(Schedule, Step) {
  ScheduleSpec s;
  s.kind = ScheduleKind::step;
  s.step_size = 10;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.2, 9, 100), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.2, 10, 100), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.2, 25, 100), 0.05);
  s.warmup_steps = 5;  // the steps count from the end of the warmup
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.2, 14, 100), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.2, 15, 100), 0.1);
}

TEST(Schedule, Cosine) {
  ScheduleSpec s;
  s.kind = ScheduleKind::cosine;
  s.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 0, 100), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 50, 100), 0.055);
  EXPECT_NEAR(learning_rate(s, 0.1, 25, 100), 0.01 + 0.09 * 0.5 * (1 + std::sqrt(0.5)), 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 100, 100), 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 150, 100), 0.01);  // past the horizon: the floor
  s.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 9, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 10, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.1, 60, 110), 0.055);
}

TEST(Clip, GlobalNorm) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    double g[2] = {3, 4};
    ClipSpec spec;
    spec.global_norm = 10.0;
    ClipResult r = clip(level, g, 2, spec);
    EXPECT_EQ(r.norm, 5.0);
    EXPECT_FALSE(r.norm_clipped);
    EXPECT_EQ(g[0], 3.0);
    spec.global_norm = 1.0;
    r = clip(level, g, 2, spec);
    EXPECT_TRUE(r.norm_clipped);
    EXPECT_EQ(r.norm, 5.0);
    EXPECT_DOUBLE_EQ(g[0], 3.0 / (5.0 + 1e-6));
    EXPECT_DOUBLE_EQ(g[1], 4.0 / (5.0 + 1e-6));
  }
}

TEST(Clip, ValueThenNorm) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    double g[3] = {3, 4, -5};
    ClipSpec spec;
    spec.value = 3.5;
    ClipResult r = clip(level, g, 3, spec);
    EXPECT_TRUE(r.value_clipped);
    EXPECT_FALSE(r.norm_clipped);
    EXPECT_DOUBLE_EQ(r.norm, std::sqrt(50.0));  // the norm logged is before clipping
    EXPECT_EQ(g[0], 3.0);
    EXPECT_EQ(g[1], 3.5);
    EXPECT_EQ(g[2], -3.5);

    double h[3] = {3, 4, -5};
    spec.global_norm = 1.0;
    r = clip(level, h, 3, spec);
    const double after_value = std::sqrt(9 + 12.25 + 12.25);
    EXPECT_DOUBLE_EQ(h[0], 3.0 / (after_value + 1e-6));
    EXPECT_DOUBLE_EQ(h[2], -3.5 / (after_value + 1e-6));
    EXPECT_TRUE(r.value_clipped && r.norm_clipped);
  }
}

TEST(Clip, ScaleAppliedByTheOptimizerGivesTheSameUpdateAsClipping) {
  // The trainer clips by norm through the optimizer (clip_by_value + step(..., scale)); the
  // update must be the one of clip() followed by step(), to the bit, for every optimizer.
  const Layout layout(tiny_spec());
  for (CpuLevel level : test::runnable_levels()) {
    for (OptimizerKind kind : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw}) {
      OptimizerSpec spec;
      spec.kind = kind;
      spec.momentum = kind == OptimizerKind::sgd ? 0.9 : 0.0;
      spec.weight_decay = 0.01;
      Optimizer<float> a(spec, layout, level), b(spec, layout, level);
      Vec<float> pa(6), pb(6);
      pa << 0.3f, -1.2f, 2.0f, 0.7f, -0.1f, 0.05f;
      pb = pa;
      ClipSpec clip_spec;
      clip_spec.global_norm = 0.25;
      for (int step = 0; step < 3; ++step) {
        Vec<float> g(6);
        g << 0.5f * (step + 1), -1.5f, 0.25f, 2.0f, -0.75f, 1.0f / (step + 1);
        Vec<float> ga = g, gb = g;
        const ClipResult ra = clip(level, ga.data(), 6, clip_spec);
        a.step(pa.data(), ga.data(), 0.01);
        const ClipResult rb = clip_by_value(level, gb.data(), 6, clip_spec, l2_norm(level, g.data(), 6));
        b.step(pb.data(), gb.data(), 0.01, rb.scale);
        EXPECT_TRUE(ra.norm_clipped && rb.norm_clipped);
        EXPECT_EQ(ra.norm, rb.norm);
      }
      EXPECT_EQ(pa, pb) << to_string(kind) << " at " << to_string(level);
      EXPECT_EQ(*a.state()[0].buffer, *b.state()[0].buffer);
    }
  }
}

TEST(Clip, NothingSetLeavesTheGradient) {
  for (CpuLevel level : test::runnable_levels()) {
    SCOPED_TRACE(test::level_name(level));
    float g[2] = {1e6f, -2e6f};
    const ClipResult r = clip(level, g, 2, ClipSpec{});
    EXPECT_FLOAT_EQ(static_cast<float>(r.norm), std::sqrt(5e12f));
    EXPECT_EQ(g[0], 1e6f);
    EXPECT_FALSE(r.value_clipped || r.norm_clipped);
  }
}

}  // namespace
}  // namespace mdn
