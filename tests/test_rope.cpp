// The CPU RoPE (kernels/cpu/rope_cpu.h, GPT-NeoX half-split) held to the fp64 reference
// (reference/rope_reference.h): relative RMS error at most 1e-5 forward and 1e-4 backward, over head dims
// 2 to 128, sequence lengths that are not multiples of the kernel's 32-position blocks, per-token positions
// of packed documents (restarting at 0) and positions near 10^6, bases 10^4 and 5 * 10^5. Also: the
// reference backward against central finite differences, backward(forward(x)) = x, in-place calls,
// positions = null meaning t, bit-identical results for 1 and 3 threads, and errors naming bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/rope_cpu.h"
#include "reference/rope_reference.h"
#include "test_support.h"

namespace {

using race::test::normal;
using race::test::widen;
using race::test::relative_rms;
using race::test::expect_error;
using race::test::bit_equal;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

enum class Positions { none, packed, far };  // far: around 10^6

struct Case {
  int64_t B, H, T, D;
  Positions positions;
  float base = 10000.f;
};

// Packed rows: documents of random length 1..20, each restarting at 0.
std::vector<int32_t> make_positions(const Case& c, std::mt19937_64& rng) {
  std::vector<int32_t> pos;
  if (c.positions == Positions::none) return pos;
  for (int64_t b = 0; b < c.B; ++b) {
    int32_t p = 0, left = 0;
    for (int64_t t = 0; t < c.T; ++t) {
      if (c.positions == Positions::far) {
        pos.push_back(static_cast<int32_t>(1000000 - 37 + t));
        continue;
      }
      if (left == 0) {
        p = 0;
        left = 1 + static_cast<int32_t>(rng() % 20);
      }
      pos.push_back(p++);
      --left;
    }
  }
  return pos;
}

class Rope : public ::testing::TestWithParam<Case> {};

TEST_P(Rope, MatchesTheFp64Reference) {
  const Case c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.B * 1000 + c.T * 10 + c.D));
  const int64_t size = c.B * c.H * c.T * c.D;
  const auto x = normal(rng, size), dout = normal(rng, size);
  const auto pos = make_positions(c, rng);
  const int32_t* p = pos.empty() ? nullptr : pos.data();
  std::vector<float> y(static_cast<size_t>(size), std::numeric_limits<float>::quiet_NaN()), dx = y;
  cpu::rope_forward(y.data(), x.data(), p, c.B, c.H, c.T, c.D, c.base);
  cpu::rope_backward(dx.data(), dout.data(), p, c.B, c.H, c.T, c.D, c.base);
  const double e_y = relative_rms(y, ref::rope_forward(widen(x), pos, c.B, c.H, c.T, c.D, c.base));
  const double e_dx = relative_rms(dx, ref::rope_backward(widen(dout), pos, c.B, c.H, c.T, c.D, c.base));
  std::printf("[ cmp ] B %lld H %lld T %lld D %lld positions %d base %g: y %.1e dx %.1e\n",
              static_cast<long long>(c.B), static_cast<long long>(c.H), static_cast<long long>(c.T),
              static_cast<long long>(c.D), static_cast<int>(c.positions), static_cast<double>(c.base), e_y,
              e_dx);
  EXPECT_LE(e_y, 1e-5);
  EXPECT_LE(e_dx, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Rope,
                         ::testing::Values(Case{1, 1, 1, 2, Positions::none},
                                           Case{2, 3, 37, 16, Positions::none},
                                           Case{3, 2, 70, 64, Positions::packed},
                                           Case{1, 4, 33, 128, Positions::far},
                                           Case{2, 1, 65, 6, Positions::packed, 500000.f}));

TEST(Rope, ReferenceBackwardMatchesFiniteDifferences) {
  const Case c{2, 2, 3, 4, Positions::packed};
  std::mt19937_64 rng(3);
  auto x = widen(normal(rng, 48));
  const auto dout = widen(normal(rng, 48));
  const auto pos = make_positions(c, rng);
  auto loss = [&] {
    const auto y = ref::rope_forward(x, pos, c.B, c.H, c.T, c.D, c.base);
    double s = 0.0;
    for (size_t i = 0; i < y.size(); ++i) s += dout[i] * y[i];
    return s;
  };
  const auto g = ref::rope_backward(dout, pos, c.B, c.H, c.T, c.D, c.base);
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i], h = 1e-5;
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    EXPECT_NEAR((up - down) / (2 * h), g[i], 1e-8);
  }
}

TEST(Rope, BackwardUndoesForwardAndInPlaceAgrees) {
  const Case c{2, 3, 45, 32, Positions::packed};
  std::mt19937_64 rng(4);
  const auto x = normal(rng, c.B * c.H * c.T * c.D);
  const auto pos = make_positions(c, rng);
  std::vector<float> y(x.size());
  cpu::rope_forward(y.data(), x.data(), pos.data(), c.B, c.H, c.T, c.D, c.base);
  auto back = y;
  cpu::rope_backward(back.data(), back.data(), pos.data(), c.B, c.H, c.T, c.D, c.base);
  EXPECT_LE(relative_rms(back, widen(x)), 1e-6);
  auto in_place = x;
  cpu::rope_forward(in_place.data(), in_place.data(), pos.data(), c.B, c.H, c.T, c.D, c.base);
  EXPECT_TRUE(bit_equal(in_place, y));
}

TEST(Rope, NullPositionsMeanTokenIndexAndThreadCountDoesNotMatter) {
  const Case c{2, 2, 100, 16, Positions::none};
  std::mt19937_64 rng(5);
  const auto x = normal(rng, c.B * c.H * c.T * c.D);
  std::vector<int32_t> t_pos;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t) t_pos.push_back(static_cast<int32_t>(t));
  const int threads = omp_get_max_threads();
  std::vector<float> y[3];
  for (int k = 0; k < 3; ++k) {
    omp_set_num_threads(k == 2 ? 3 : 1);
    y[k].resize(x.size());
    cpu::rope_forward(y[k].data(), x.data(), k == 1 ? t_pos.data() : nullptr, c.B, c.H, c.T, c.D, c.base);
  }
  omp_set_num_threads(threads);
  EXPECT_TRUE(bit_equal(y[0], y[1]));
  EXPECT_TRUE(bit_equal(y[0], y[2]));
}

TEST(Rope, BadInputIsAnErrorNamingIt) {
  std::vector<float> buf(64, 1.f);
  float* p = buf.data();
  const std::vector<int32_t> pos = {0, 1, 2, 0, -4, 1};
  expect_error([&] { cpu::rope_forward(p, p, nullptr, 1, 1, 2, 7, 10000.f); }, "head_dim = 7");
  expect_error([&] { cpu::rope_forward(p, p, nullptr, 1, 1, 2, 0, 10000.f); }, "head_dim = 0");
  expect_error([&] { cpu::rope_forward(p, p, pos.data(), 2, 1, 3, 4, 10000.f); },
               "position -4 at (batch 1, token 1) must be >= 0");
  expect_error([&] { cpu::rope_backward(p, p, nullptr, 1, 1, 2, 4, 0.f); }, "base = 0");
  expect_error([&] { cpu::rope_backward(p, nullptr, nullptr, 1, 1, 2, 4, 10000.f); }, "the input is null");
  expect_error([&] { cpu::rope_forward(p, p, nullptr, -1, 1, 2, 4, 10000.f); }, "batch = -1");
}

}  // namespace
