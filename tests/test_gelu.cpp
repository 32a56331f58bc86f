// The CPU GELU (kernels/cpu/gelu_cpu.h) held to the fp64 reference in GPT-2's tanh form
// (reference/gelu_reference.h): relative RMS error at most 1e-5 forward and 1e-4 backward, on lengths that
// are not multiples of the 16-lane vector or the 4096-element work item, over x ~ N(0, 3^2) plus the far
// tails (|x| up to 1e4, where exp saturates). Also: the reference backward against central finite
// differences, in-place calls, bit-identical results for 1 and 3 threads, and errors.
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
#include "kernels/cpu/gelu_cpu.h"
#include "reference/gelu_reference.h"
#include "test_support.h"

namespace {

using race::test::widen;
using race::test::relative_rms;
using race::test::expect_error;
using race::test::bit_equal;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

// x ~ N(0, 3^2), its first elements replaced by the edge values (zero, tiny, the far tails).
std::vector<float> inputs(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, 3.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = dist(rng);
  const float edges[] = {0.f, 1e-4f, -1e-4f, 5.f, -5.f, 10.f, -10.f, 20.f, -20.f, 1e4f, -1e4f};
  for (size_t i = 0; i < std::size(edges) && i < x.size(); ++i) x[i] = edges[i];
  return x;
}

class Gelu : public ::testing::TestWithParam<int64_t> {};

TEST_P(Gelu, MatchesTheFp64Reference) {
  const int64_t n = GetParam();
  const auto x = inputs(n, 100 + static_cast<uint64_t>(n));
  std::mt19937_64 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> dy(x.size());
  for (auto& v : dy) v = dist(rng);
  std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN()), dx = y;
  cpu::gelu_forward(y.data(), x.data(), n);
  cpu::gelu_backward(dx.data(), dy.data(), x.data(), n);
  const double e_y = relative_rms(y, ref::gelu_forward(widen(x)));
  const double e_dx = relative_rms(dx, ref::gelu_backward(widen(dy), widen(x)));
  std::printf("[ cmp ] n %lld: y %.1e dx %.1e\n", static_cast<long long>(n), e_y, e_dx);
  EXPECT_LE(e_y, 1e-5);
  EXPECT_LE(e_dx, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Lengths, Gelu, ::testing::Values(1, 15, 17, 4101, 100003));

TEST(Gelu, TailsAndZeroAreExact) {
  const std::vector<float> x = {0.f, 1e4f, -1e4f, 30.f, -30.f};
  std::vector<float> y(x.size()), dx(x.size()), ones(x.size(), 1.f);
  cpu::gelu_forward(y.data(), x.data(), 5);
  cpu::gelu_backward(dx.data(), ones.data(), x.data(), 5);
  EXPECT_EQ(y[0], 0.f);
  EXPECT_EQ(y[1], 1e4f);
  EXPECT_EQ(y[2], 0.f);
  EXPECT_EQ(y[3], 30.f);
  EXPECT_EQ(y[4], 0.f);
  EXPECT_EQ(dx[0], 0.5f);
  EXPECT_EQ(dx[1], 1.f);
  EXPECT_EQ(dx[2], 0.f);
  EXPECT_EQ(dx[3], 1.f);
  EXPECT_EQ(dx[4], 0.f);
}

TEST(Gelu, ReferenceBackwardMatchesFiniteDifferences) {
  auto x = widen(inputs(40, 3));
  for (size_t i = 0; i < x.size(); ++i) {
    const double h = 1e-6 * std::max(1.0, std::abs(x[i]));
    std::vector<double> up{x[i] + h}, down{x[i] - h};
    const double fd = (ref::gelu_forward(up)[0] - ref::gelu_forward(down)[0]) / (2 * h);
    EXPECT_NEAR(fd, ref::gelu_backward({1.0}, {x[i]})[0], 1e-7) << "x = " << x[i];
  }
}

TEST(Gelu, InPlaceAndThreadCountGiveTheSameBits) {
  const int64_t n = 20011;
  const auto x = inputs(n, 4);
  std::vector<float> dy(x.size(), 0.25f);
  const int threads = omp_get_max_threads();
  std::vector<float> y[2], dx[2];
  for (int k = 0; k < 2; ++k) {
    omp_set_num_threads(k == 0 ? 1 : 3);
    y[k].resize(x.size());
    dx[k].resize(x.size());
    cpu::gelu_forward(y[k].data(), x.data(), n);
    cpu::gelu_backward(dx[k].data(), dy.data(), x.data(), n);
  }
  omp_set_num_threads(threads);
  EXPECT_TRUE(bit_equal(y[0], y[1]));
  EXPECT_TRUE(bit_equal(dx[0], dx[1]));
  auto in_place = x;
  cpu::gelu_forward(in_place.data(), in_place.data(), n);
  EXPECT_TRUE(bit_equal(in_place, y[0]));
  auto grad = dy;
  cpu::gelu_backward(grad.data(), grad.data(), x.data(), n);
  EXPECT_TRUE(bit_equal(grad, dx[0]));
}

TEST(Gelu, BadInputIsAnErrorNamingIt) {
  float v = 1.f;
  expect_error([&] { cpu::gelu_forward(&v, &v, -3); }, "n = -3");
  expect_error([&] { cpu::gelu_forward(&v, nullptr, 3); }, "x is null");
  expect_error([&] { cpu::gelu_backward(&v, nullptr, &v, 3); }, "dy is null");
  cpu::gelu_forward(nullptr, nullptr, 0);  // nothing to do, nothing read
}

}  // namespace
