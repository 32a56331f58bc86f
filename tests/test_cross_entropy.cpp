// The CPU softmax cross-entropy (kernels/cpu/cross_entropy_cpu.h) held to the fp64 reference
// (reference/cross_entropy_reference.h): relative RMS error at most 1e-5 on the per-row losses and their sum
// and 1e-4 on dlogits, on vocabularies that are not multiples of the 16-lane vector (1, 19, 257, 50257),
// with ignored rows, logits far from zero (1e4) and wide spreads. Also: the count, grad_scale, the
// gradient written in place over the logits, loss-only calls, all-ignored batches, the reference backward
// against central finite differences, bit-identical results for 1 and 3 threads, and bad targets named.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cross_entropy_cpu.h"
#include "reference/cross_entropy_reference.h"
#include "test_support.h"

namespace {

using race::test::widen;
using race::test::relative_rms;
using race::test::expect_error;
using race::test::bit_equal;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

struct Case {
  int64_t rows, vocab;
};

struct Data {
  std::vector<float> logits;
  std::vector<int32_t> targets;
};

// Logits ~ N(0, 3^2); row 1 shifted by 1e4 (stability), row 2 spread by 30 (a confident, peaked softmax);
// about one row in five ignored (row 0 never).
Data make_data(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 3.f);
  Data d{std::vector<float>(static_cast<size_t>(c.rows * c.vocab)),
         std::vector<int32_t>(static_cast<size_t>(c.rows))};
  for (int64_t n = 0; n < c.rows; ++n) {
    for (int64_t v = 0; v < c.vocab; ++v) {
      float x = dist(rng);
      if (n == 1) x += 1e4f;
      if (n == 2) x *= 10.f;
      d.logits[n * c.vocab + v] = x;
    }
    d.targets[n] = n > 0 && rng() % 5 == 0 ? cpu::kIgnoreTarget : static_cast<int32_t>(rng() % c.vocab);
  }
  return d;
}

struct Result {
  cpu::CrossEntropyStats stats;
  std::vector<float> losses, dlogits;
};

Result run_kernel(const Case& c, const Data& d, float grad_scale) {
  Result r{{},
           std::vector<float>(static_cast<size_t>(c.rows), std::numeric_limits<float>::quiet_NaN()),
           std::vector<float>(d.logits.size(), std::numeric_limits<float>::quiet_NaN())};
  r.stats = cpu::softmax_cross_entropy(r.dlogits.data(), r.losses.data(), d.logits.data(), d.targets.data(),
                                       c.rows, c.vocab, grad_scale);
  return r;
}

class CrossEntropy : public ::testing::TestWithParam<Case> {};

TEST_P(CrossEntropy, MatchesTheFp64Reference) {
  const Case c = GetParam();
  const Data d = make_data(c, 40 + static_cast<uint64_t>(c.rows * 3 + c.vocab));
  const int64_t count = cpu::count_targets(d.targets.data(), c.rows);
  const float scale = 1.f / static_cast<float>(count);
  const Result r = run_kernel(c, d, scale);
  const auto f = ref::cross_entropy_forward(widen(d.logits), d.targets, c.vocab);
  auto want_d = ref::cross_entropy_backward(widen(d.logits), d.targets, c.vocab);
  for (auto& g : want_d) g *= static_cast<double>(scale);
  EXPECT_EQ(r.stats.count, f.count);
  EXPECT_EQ(count, f.count);
  const double e_losses = relative_rms(r.losses, f.losses);
  const double e_sum =
      std::abs(r.stats.loss_sum - f.loss_sum) / std::max(1.0, std::abs(f.loss_sum));  // V = 1: 0
  const double e_d = relative_rms(r.dlogits, want_d);
  std::printf("[ cmp ] rows %lld V %lld (%lld counted): losses %.1e loss_sum %.1e dlogits %.1e\n",
              static_cast<long long>(c.rows), static_cast<long long>(c.vocab),
              static_cast<long long>(f.count), e_losses, e_sum, e_d);
  EXPECT_LE(e_losses, 1e-5);
  EXPECT_LE(e_sum, 1e-5);
  EXPECT_NEAR(r.stats.mean(), f.loss_sum / static_cast<double>(f.count), 1e-5 * std::abs(r.stats.mean()));
  EXPECT_LE(e_d, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CrossEntropy,
                         ::testing::Values(Case{1, 1}, Case{37, 19}, Case{64, 257}, Case{300, 1000},
                                           Case{5, 50257}));

TEST(CrossEntropy, InPlaceAndLossOnlyCallsAgree) {
  const Case c{40, 133};
  const Data d = make_data(c, 2);
  const Result r = run_kernel(c, d, 0.5f);
  auto in_place = d.logits;
  const auto stats = cpu::softmax_cross_entropy(in_place.data(), nullptr, in_place.data(), d.targets.data(),
                                                c.rows, c.vocab, 0.5f);
  EXPECT_TRUE(bit_equal(in_place, r.dlogits));
  EXPECT_EQ(stats.loss_sum, r.stats.loss_sum);
  std::vector<float> losses(static_cast<size_t>(c.rows));
  const auto loss_only = cpu::softmax_cross_entropy(nullptr, losses.data(), d.logits.data(), d.targets.data(),
                                                    c.rows, c.vocab, 0.5f);
  EXPECT_TRUE(bit_equal(losses, r.losses));
  EXPECT_EQ(loss_only.loss_sum, r.stats.loss_sum);
  EXPECT_EQ(loss_only.count, r.stats.count);
}

TEST(CrossEntropy, IgnoredRowsGiveNothing) {
  const Case c{3, 21};
  Data d = make_data(c, 3);
  d.targets.assign(3, cpu::kIgnoreTarget);
  const Result r = run_kernel(c, d, 1.f);
  EXPECT_EQ(r.stats.count, 0);
  EXPECT_EQ(r.stats.loss_sum, 0.0);
  EXPECT_EQ(r.stats.mean(), 0.0);
  for (float x : r.losses) EXPECT_EQ(x, 0.f);
  for (float x : r.dlogits) EXPECT_EQ(x, 0.f);
  EXPECT_EQ(cpu::count_targets(d.targets.data(), 3), 0);
}

TEST(CrossEntropy, ReferenceBackwardMatchesFiniteDifferences) {
  const Case c{4, 6};
  const Data d = make_data(c, 4);
  auto logits = widen(d.logits);
  for (size_t i = c.vocab; i < 3 * static_cast<size_t>(c.vocab); ++i)
    logits[i] *= 1e-2;  // rows 1, 2 back near 0
  const auto g = ref::cross_entropy_backward(logits, d.targets, c.vocab);
  for (size_t i = 0; i < logits.size(); ++i) {
    const double saved = logits[i], h = 1e-6;
    logits[i] = saved + h;
    const double up = ref::cross_entropy_forward(logits, d.targets, c.vocab).loss_sum;
    logits[i] = saved - h;
    const double down = ref::cross_entropy_forward(logits, d.targets, c.vocab).loss_sum;
    logits[i] = saved;
    EXPECT_NEAR((up - down) / (2 * h), g[i], 1e-7);
  }
}

TEST(CrossEntropy, BitIdenticalForAnyThreadCount) {
  const Case c{203, 301};
  const Data d = make_data(c, 5);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result one = run_kernel(c, d, 0.01f);
  omp_set_num_threads(3);
  const Result three = run_kernel(c, d, 0.01f);
  omp_set_num_threads(threads);
  EXPECT_EQ(one.stats.loss_sum, three.stats.loss_sum);
  EXPECT_TRUE(bit_equal(one.losses, three.losses));
  EXPECT_TRUE(bit_equal(one.dlogits, three.dlogits));
}

TEST(CrossEntropy, BadTargetsAreNamedAndNothingIsWritten) {
  std::vector<float> logits(12, 0.5f), d(12, 9.f);
  const std::vector<int32_t> too_big = {0, 1, 4}, negative = {0, -2, 1};
  expect_error(
      [&] { cpu::softmax_cross_entropy(d.data(), nullptr, logits.data(), too_big.data(), 3, 4, 1.f); },
      "target 4 at row 2 is outside [0, 4) and is not the ignore index -1");
  expect_error(
      [&] { cpu::softmax_cross_entropy(d.data(), nullptr, logits.data(), negative.data(), 3, 4, 1.f); },
      "target -2 at row 1");
  for (float x : d) EXPECT_EQ(x, 9.f);
  expect_error(
      [&] { cpu::softmax_cross_entropy(d.data(), nullptr, logits.data(), too_big.data(), 3, 0, 1.f); },
      "vocab = 0");
  expect_error([&] { cpu::softmax_cross_entropy(d.data(), nullptr, nullptr, too_big.data(), 3, 4, 1.f); },
               "logits is null");
  expect_error([&] { cpu::count_targets(nullptr, 3); }, "targets is null");
}

}  // namespace
