// The CPU optimizer kernels (kernels/cpu/adamw_cpu.h) held to the fp64 reference
// (reference/adamw_reference.h), which follows torch.optim.AdamW: over five steps with weight decay, a
// clipping grad_scale and some zero gradients, the parameter change (p - p0), m and v stay within relative
// RMS 1e-5 of the reference on a buffer that is not a multiple of the vector width or of any block. Also: the
// gradient norm against a compensated fp64 sum and bit-identical for 1 and 3 threads, NaN and inf showing in
// it, the clipping scale, and errors naming bad hyperparameters. CpuOps::adamw's ranges: each tensor with
// its own weight decay, one call, the gaps between ranges untouched, and overlapping ranges refused.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/adamw_cpu.h"
#include "model/cpu_ops.h"
#include "reference/adamw_reference.h"
#include "test_support.h"

namespace {

using race::test::normal;
using race::test::widen;
using race::test::relative_rms;
using race::test::expect_error;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

TEST(AdamW, FiveStepsMatchTheFp64Reference) {
  const int64_t n = 100003;
  std::mt19937_64 rng(1);
  auto params =
      normal(rng, n, 0.02);  // GPT-2's initial scale: fp32 spacing there is 2e-9, far below an update
  const auto params0 = params;
  std::vector<float> m(static_cast<size_t>(n), 0.f), v(static_cast<size_t>(n), 0.f);
  ref::AdamWState state{widen(params), std::vector<double>(static_cast<size_t>(n)),
                        std::vector<double>(static_cast<size_t>(n))};
  const cpu::AdamWOptions base{
      .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  for (int64_t step = 1; step <= 5; ++step) {
    auto grads = normal(rng, n, 0.01 * static_cast<double>(step));
    for (int64_t i = 0; i < n; i += 97) grads[i] = 0.f;  // never-used rows: v = 0, the update rests on eps
    cpu::AdamWOptions o = base;
    o.step = step;
    o.grad_scale = step == 3 ? 0.25f : 1.f;
    cpu::adamw_step(params.data(), grads.data(), m.data(), v.data(), n, o);
    ref::adamw_step(state, widen(grads), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, step, o.grad_scale);
  }
  std::vector<double> delta(params.size()), want_delta(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    delta[i] = static_cast<double>(params[i]) - params0[i];
    want_delta[i] = state.params[i] - params0[i];
  }
  const double e_p = relative_rms(delta, want_delta), e_m = relative_rms(widen(m), state.m);
  const double e_v = relative_rms(widen(v), state.v);
  std::printf("[ cmp ] n %lld, 5 steps: p - p0 %.1e m %.1e v %.1e\n", static_cast<long long>(n), e_p, e_m,
              e_v);
  EXPECT_LE(e_p, 1e-5);
  EXPECT_LE(e_m, 1e-5);
  EXPECT_LE(e_v, 1e-5);
}

TEST(AdamW, NoWeightDecayLeavesAZeroGradientParameterAlone) {
  std::vector<float> p = {1.5f, -2.f}, g = {0.f, 0.f}, m = {0.f, 0.f}, v = {0.f, 0.f};
  cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), 2,
                  {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.f, .step = 1});
  EXPECT_EQ(p[0], 1.5f);
  EXPECT_EQ(p[1], -2.f);
}

TEST(GradNorm, MatchesACompensatedSumForAnyThreadCount) {
  const int64_t n = 300007;  // four and a half of the kernel's 2^16 blocks
  std::mt19937_64 rng(2);
  const auto g = normal(rng, n, 1e-3);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = cpu::grad_norm(g.data(), n);
  omp_set_num_threads(3);
  const double three = cpu::grad_norm(g.data(), n);
  omp_set_num_threads(threads);
  EXPECT_EQ(one, three);
  const double want = ref::grad_norm(widen(g));
  EXPECT_NEAR(one, want, 1e-12 * want);
  EXPECT_EQ(cpu::grad_norm(nullptr, 0), 0.0);

  auto bad = g;
  bad[12345] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::grad_norm(bad.data(), n), std::numeric_limits<double>::infinity());
  bad[200000] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(cpu::grad_norm(bad.data(), n)));
}

TEST(GradNorm, ClipScale) {
  EXPECT_NEAR(cpu::clip_scale(2.0, 1.0), 0.5, 1e-6);
  EXPECT_EQ(cpu::clip_scale(0.5, 1.0), 1.f);
  EXPECT_EQ(cpu::clip_scale(0.0, 1.0), 1.f);
  EXPECT_EQ(cpu::clip_scale(1e6, 0.0), 1.f);  // clipping off
  EXPECT_TRUE(std::isnan(cpu::clip_scale(std::numeric_limits<double>::quiet_NaN(), 1.0)));
  EXPECT_TRUE(std::isnan(cpu::clip_scale(std::numeric_limits<double>::infinity(), 1.0)));
}

TEST(AdamW, BadInputIsAnErrorNamingIt) {
  float x = 0.f;
  const cpu::AdamWOptions ok{
      .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .step = 1};
  auto run = [&](cpu::AdamWOptions o) { cpu::adamw_step(&x, &x, &x, &x, 1, o); };
  auto with = [&](auto change) {
    cpu::AdamWOptions o = ok;
    change(o);
    return o;
  };
  expect_error([&] { run(with([](auto& o) { o.step = 0; })); }, "step = 0");
  expect_error([&] { run(with([](auto& o) { o.beta1 = 1.f; })); }, "beta1 = 1");
  expect_error([&] { run(with([](auto& o) { o.beta2 = -0.5f; })); }, "beta2 = -0.5");
  expect_error([&] { run(with([](auto& o) { o.eps = 0.f; })); }, "eps = 0");
  expect_error([&] { run(with([](auto& o) { o.lr = -1.f; })); }, "lr = -1");
  expect_error([&] { run(with([](auto& o) { o.weight_decay = -0.1f; })); }, "weight_decay = -0.1");
  expect_error([&] { run(with([](auto& o) { o.grad_scale = std::numeric_limits<float>::quiet_NaN(); })); },
               "grad_scale = nan");
  expect_error([&] { cpu::adamw_step(&x, nullptr, &x, &x, 1, ok); }, "grads is null");
  expect_error([&] { cpu::adamw_step(&x, &x, &x, &x, -1, ok); }, "n = -1");
  expect_error([&] { cpu::grad_norm(nullptr, 5); }, "grads is null");
}

TEST(AdamW, OpsRangesUpdateEachTensorWithItsOwnDecayAndLeaveGapsAlone) {
  const int64_t n = 5000;
  std::mt19937_64 rng(7);
  auto params = normal(rng, n, 0.02);
  const auto params0 = params;
  std::vector<float> m(static_cast<size_t>(n), 0.f), v(static_cast<size_t>(n), 0.f);
  const std::vector<race::model::ParamRange> ranges = {{0, 1000, true}, {1000, 0, true}, {1500, 3001, false}};
  std::vector<ref::AdamWState> states;
  for (const auto& r : ranges)
    states.push_back({widen(std::vector<float>(params.begin() + r.offset, params.begin() + r.offset + r.count)),
                      std::vector<double>(static_cast<size_t>(r.count)), std::vector<double>(static_cast<size_t>(r.count))});
  race::model::CpuOps ops;
  for (int64_t step = 1; step <= 3; ++step) {
    const auto grads = normal(rng, n, 0.01);
    race::model::AdamWStep adam;
    adam.lr = 1e-2f;
    adam.weight_decay = 0.5f;
    adam.step = step;
    adam.grad_scale = 0.8f;
    ops.adamw(params.data(), grads.data(), m.data(), v.data(), ranges, adam);
    for (size_t i = 0; i < ranges.size(); ++i) {
      const auto& r = ranges[i];
      const std::vector<float> g(grads.begin() + r.offset, grads.begin() + r.offset + r.count);
      ref::adamw_step(states[i], widen(g), 1e-2, 0.9, 0.95, 1e-8, r.decay ? 0.5 : 0.0, step, 0.8);
    }
  }
  for (size_t i = 0; i < ranges.size(); ++i) {
    const auto& r = ranges[i];
    if (r.count == 0) continue;
    const std::vector<float> got(params.begin() + r.offset, params.begin() + r.offset + r.count);
    EXPECT_LE(relative_rms(got, states[i].params), 1e-6) << "range " << i;
  }
  for (int64_t i = 1000; i < 1500; ++i) {
    ASSERT_EQ(params[i], params0[i]) << "element " << i << " lies between ranges";
    ASSERT_EQ(m[i], 0.f);
  }
}

// A range's copy receives the range's updated values (the CPU keeps fp32 copies; a bf16 one is an error
// naming it, since the CPU stores no bf16).
TEST(AdamW, OpsRangeCopiesReceiveTheUpdatedValues) {
  std::mt19937_64 rng(3);
  auto params = normal(rng, 300, 0.02);
  const auto grads = normal(rng, 300, 0.01);
  std::vector<float> m(300, 0.f), v(300, 0.f), copy(100, -7.f);
  race::model::CpuOps ops;
  race::model::AdamWStep adam;
  adam.lr = 1e-2f;
  const std::vector<race::model::ParamRange> ranges = {{0, 100, true}, {150, 100, false, copy.data()}};
  ops.adamw(params.data(), grads.data(), m.data(), v.data(), ranges, adam);
  EXPECT_EQ(copy, std::vector<float>(params.begin() + 150, params.begin() + 250));
  uint16_t half[4] = {};
  const std::vector<race::model::ParamRange> bf16 = {{0, 4, false, {half, race::model::ElementType::bf16}}};
  expect_error([&] { ops.adamw(params.data(), grads.data(), m.data(), v.data(), bf16, adam); },
               "adamw: a range's copy is a bf16 operand");
}

TEST(AdamW, OpsRangesOutOfOrderOrOverlappingAreErrors) {
  float x = 0.f;
  race::model::CpuOps ops;
  race::model::AdamWStep adam;
  adam.lr = 1e-3f;
  expect_error([&] { ops.adamw(&x, &x, &x, &x, {{0, 10, false}, {5, 10, false}}, adam); },
               "range 1 starts at 5, before the previous range ends (10)");
  expect_error([&] { ops.adamw(&x, &x, &x, &x, {{-1, 10, false}}, adam); }, "range 0 has offset -1");
  adam.step = 0;
  expect_error([&] { ops.adamw(&x, &x, &x, &x, {}, adam); }, "step = 0");  // checked even without ranges
}

}  // namespace
