// The OpenBLAS linear layer (kernels/cpu/linear_cpu.h) held to the fp64 reference
// (reference/linear_reference.h): relative RMS error at most 1e-5 on y and 1e-4 on dx, dweight, dbias, on
// shapes that split by rows and by columns (rows < out, rows < in), with and without bias, none a multiple of
// a block size. Also: the reference backward against central finite differences, dx overwritten while dweight
// and dbias accumulate, null gradients skipped, bit-identical reruns at a fixed thread count, and errors
// naming bad sizes.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/linear_cpu.h"
#include "reference/linear_reference.h"
#include "test_support.h"

namespace {

using race::test::normal;
using race::test::widen;
using race::test::relative_rms;
using race::test::nan_filled;
using race::test::expect_error;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

constexpr double kForwardTolerance = 1e-5;
constexpr double kBackwardTolerance = 1e-4;

struct Case {
  int64_t rows, in, out;
  bool bias;
};

struct Data {
  Case c;
  std::vector<float> x, weight, bias, dy;
};

Data make_data(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data d{c, normal(rng, c.rows * c.in), normal(rng, c.out * c.in, 1.0 / std::sqrt(static_cast<double>(c.in))),
         c.bias ? normal(rng, c.out) : std::vector<float>{}, normal(rng, c.rows * c.out)};
  return d;
}

class Linear : public ::testing::TestWithParam<Case> {};

TEST_P(Linear, MatchesTheFp64Reference) {
  const Case c = GetParam();
  const Data d = make_data(c, 1000 + static_cast<uint64_t>(c.rows * 7 + c.in * 3 + c.out));
  auto y = nan_filled(c.rows * c.out);
  cpu::linear_forward(y.data(), d.x.data(), d.weight.data(), c.bias ? d.bias.data() : nullptr, c.rows, c.in,
                      c.out);
  auto dx = nan_filled(c.rows * c.in);
  std::vector<float> dweight(static_cast<size_t>(c.out * c.in), 0.f), dbias(static_cast<size_t>(c.out), 0.f);
  cpu::linear_backward(dx.data(), dweight.data(), dbias.data(), d.dy.data(), d.x.data(), d.weight.data(),
                       c.rows, c.in, c.out);

  const auto want_y = ref::linear_forward(widen(d.x), widen(d.weight), widen(d.bias), c.rows, c.in, c.out);
  const auto want = ref::linear_backward(widen(d.dy), widen(d.x), widen(d.weight), c.rows, c.in, c.out);
  const double e_y = relative_rms(y, want_y), e_dx = relative_rms(dx, want.dx);
  const double e_dw = relative_rms(dweight, want.dweight), e_db = relative_rms(dbias, want.dbias);
  std::printf("[ cmp ] rows %lld in %lld out %lld: y %.1e dx %.1e dweight %.1e dbias %.1e\n",
              static_cast<long long>(c.rows), static_cast<long long>(c.in), static_cast<long long>(c.out),
              e_y, e_dx, e_dw, e_db);
  EXPECT_LE(e_y, kForwardTolerance);
  EXPECT_LE(e_dx, kBackwardTolerance);
  EXPECT_LE(e_dw, kBackwardTolerance);
  EXPECT_LE(e_db, kBackwardTolerance);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Linear,
                         ::testing::Values(Case{37, 19, 23, true},    // rows split everywhere
                                           Case{1, 257, 130, true},   // one row: columns split
                                           Case{300, 65, 33, false},  // no bias
                                           Case{5, 3, 1000, true},    // tiny input, wide output
                                           Case{129, 300, 7, true},   // dx and dweight split by columns
                                           Case{1037, 97, 61, true}));

TEST(Linear, ReferenceBackwardMatchesFiniteDifferences) {
  const Case c{3, 4, 5, true};
  Data d = make_data(c, 7);
  auto x = widen(d.x), w = widen(d.weight), b = widen(d.bias);
  const auto dy = widen(d.dy);
  auto loss = [&] {
    const auto y = ref::linear_forward(x, w, b, c.rows, c.in, c.out);
    double s = 0.0;
    for (size_t i = 0; i < y.size(); ++i) s += dy[i] * y[i];
    return s;
  };
  const auto g = ref::linear_backward(dy, x, w, c.rows, c.in, c.out);
  const double h = 1e-5;
  for (auto [param, grad] : {std::pair{&x, &g.dx}, std::pair{&w, &g.dweight}, std::pair{&b, &g.dbias}}) {
    for (size_t i = 0; i < param->size(); ++i) {
      const double saved = (*param)[i];
      (*param)[i] = saved + h;
      const double up = loss();
      (*param)[i] = saved - h;
      const double down = loss();
      (*param)[i] = saved;
      EXPECT_NEAR((up - down) / (2 * h), (*grad)[i], 1e-7);
    }
  }
}

TEST(Linear, DxIsOverwrittenWhileParameterGradientsAccumulate) {
  const Case c{41, 17, 29, true};
  const Data d = make_data(c, 11);
  std::mt19937_64 rng(12);
  const auto dweight0 = normal(rng, c.out * c.in), dbias0 = normal(rng, c.out);
  auto dweight = dweight0, dbias = dbias0;
  auto dx = nan_filled(c.rows * c.in);
  cpu::linear_backward(dx.data(), dweight.data(), dbias.data(), d.dy.data(), d.x.data(), d.weight.data(),
                       c.rows, c.in, c.out);
  auto want = ref::linear_backward(widen(d.dy), widen(d.x), widen(d.weight), c.rows, c.in, c.out);
  for (size_t i = 0; i < want.dweight.size(); ++i) want.dweight[i] += dweight0[i];
  for (size_t i = 0; i < want.dbias.size(); ++i) want.dbias[i] += dbias0[i];
  EXPECT_LE(relative_rms(dx, want.dx), kBackwardTolerance);
  EXPECT_LE(relative_rms(dweight, want.dweight), kBackwardTolerance);
  EXPECT_LE(relative_rms(dbias, want.dbias), kBackwardTolerance);

  // Each gradient alone, the others null: the same values.
  auto dx_only = nan_filled(c.rows * c.in);
  cpu::linear_backward(dx_only.data(), nullptr, nullptr, d.dy.data(), nullptr, d.weight.data(), c.rows, c.in,
                       c.out);
  EXPECT_EQ(std::memcmp(dx_only.data(), dx.data(), dx.size() * sizeof(float)), 0);
  std::vector<float> dbias_only(static_cast<size_t>(c.out), 0.f);
  cpu::linear_backward(nullptr, nullptr, dbias_only.data(), d.dy.data(), nullptr, nullptr, c.rows, c.in,
                       c.out);
  EXPECT_LE(
      relative_rms(dbias_only,
                   ref::linear_backward(widen(d.dy), widen(d.x), widen(d.weight), c.rows, c.in, c.out).dbias),
      kBackwardTolerance);
}

TEST(Linear, RerunsAreBitIdenticalAtAFixedThreadCount) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);
  for (const Case c : {Case{333, 70, 45, true}, Case{3, 70, 450, true}}) {
    const Data d = make_data(c, 21);
    std::vector<float> runs[2][3];
    for (auto& r : runs) {
      r[0] = nan_filled(c.rows * c.out);
      r[1] = nan_filled(c.rows * c.in);
      r[2].assign(static_cast<size_t>(c.out * c.in), 0.f);
      std::vector<float> dbias(static_cast<size_t>(c.out), 0.f);
      cpu::linear_forward(r[0].data(), d.x.data(), d.weight.data(), d.bias.data(), c.rows, c.in, c.out);
      cpu::linear_backward(r[1].data(), r[2].data(), dbias.data(), d.dy.data(), d.x.data(), d.weight.data(),
                           c.rows, c.in, c.out);
    }
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(std::memcmp(runs[0][k].data(), runs[1][k].data(), runs[0][k].size() * sizeof(float)), 0) << k;
  }
  omp_set_num_threads(threads);
}

TEST(Linear, NoRowsIsANoOp) {
  float w = 1.f;
  cpu::linear_forward(nullptr, nullptr, &w, nullptr, 0, 1, 1);
  cpu::linear_backward(nullptr, &w, nullptr, nullptr, nullptr, nullptr, 0, 1, 1);
  EXPECT_EQ(w, 1.f);
}

TEST(Linear, BadInputIsAnErrorNamingIt) {
  std::vector<float> buf(64, 1.f);
  float* p = buf.data();
  expect_error([&] { cpu::linear_forward(p, p, p, nullptr, 2, 0, 3); }, "in = 0");
  expect_error([&] { cpu::linear_forward(p, p, p, nullptr, 2, 3, -4); }, "out = -4");
  expect_error([&] { cpu::linear_forward(p, p, p, nullptr, -1, 3, 4); }, "rows = -1");
  expect_error([&] { cpu::linear_forward(p, p, p, nullptr, int64_t{1} << 31, 3, 4); }, "rows = 2147483648");
  expect_error([&] { cpu::linear_forward(p, nullptr, p, nullptr, 2, 3, 4); }, "x is null");
  expect_error([&] { cpu::linear_backward(p, p, p, p, p, nullptr, 2, 3, 4); },
               "weight (needed for dx) is null");
  expect_error([&] { cpu::linear_backward(p, p, p, p, nullptr, p, 2, 3, 4); },
               "x (needed for dweight) is null");
  expect_error([&] { cpu::linear_backward(p, p, p, nullptr, p, p, 2, 3, 4); }, "dy is null");
}

}  // namespace
