// The CPU LayerNorm (kernels/cpu/layernorm_cpu.h) held to the fp64 reference
// (reference/layernorm_reference.h): relative RMS error at most 1e-5 on y, mean, rstd and 1e-4 on dx,
// dweight, dbias, over widths and row counts that divide no block size (one row block, many), with and
// without weight and bias, rows far from zero mean, and the residual-fused forward (in place too). Also: the
// reference backward against central finite differences, accumulation into dx / dweight / dbias,
// bit-identical results for 1 and 3 threads, and errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/layernorm_cpu.h"
#include "reference/layernorm_reference.h"
#include "test_support.h"

namespace {

using race::test::normal;
using race::test::widen;
using race::test::relative_rms;
using race::test::nan_filled;
using race::test::expect_error;
using race::test::bit_equal;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

constexpr double kForwardTolerance = 1e-5;
constexpr double kBackwardTolerance = 1e-4;
constexpr float kEps = 1e-5f;

struct Case {
  int64_t rows, channels;
  bool affine;        // weight and bias given (else both null)
  double offset = 0;  // mean of x: rows far from zero test the two-pass variance
};

struct Data {
  std::vector<float> x, weight, bias, dy;
};

Data make_data(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data d;
  d.x = normal(rng, c.rows * c.channels, 1.0, c.offset);
  if (c.affine) {
    d.weight = normal(rng, c.channels, 0.3, 1.0);
    d.bias = normal(rng, c.channels, 0.3);
  }
  d.dy = normal(rng, c.rows * c.channels);
  return d;
}

struct Result {
  std::vector<float> y, mean, rstd, dx, dweight, dbias;
};

Result run_kernel(const Case& c, const Data& d) {
  Result r{nan_filled(c.rows * c.channels),
           nan_filled(c.rows),
           nan_filled(c.rows),
           std::vector<float>(static_cast<size_t>(c.rows * c.channels), 0.f),
           std::vector<float>(static_cast<size_t>(c.channels), 0.f),
           std::vector<float>(static_cast<size_t>(c.channels), 0.f)};
  const float* w = c.affine ? d.weight.data() : nullptr;
  const float* b = c.affine ? d.bias.data() : nullptr;
  cpu::layernorm_forward(r.y.data(), r.mean.data(), r.rstd.data(), d.x.data(), w, b, c.rows, c.channels,
                         kEps);
  cpu::layernorm_backward(r.dx.data(), r.dweight.data(), r.dbias.data(), d.dy.data(), d.x.data(), w,
                          r.mean.data(), r.rstd.data(), c.rows, c.channels);
  return r;
}

class LayerNorm : public ::testing::TestWithParam<Case> {};

TEST_P(LayerNorm, MatchesTheFp64Reference) {
  const Case c = GetParam();
  const Data d = make_data(c, 500 + static_cast<uint64_t>(c.rows * 13 + c.channels));
  const Result r = run_kernel(c, d);
  const auto f = ref::layernorm_forward(widen(d.x), widen(d.weight), widen(d.bias), c.rows, c.channels, kEps);
  const auto g = ref::layernorm_backward(widen(d.dy), widen(d.x), widen(d.weight), c.rows, c.channels, kEps);
  const double e[] = {
      relative_rms(r.y, f.y),   relative_rms(r.mean, f.mean),       relative_rms(r.rstd, f.rstd),
      relative_rms(r.dx, g.dx), relative_rms(r.dweight, g.dweight), relative_rms(r.dbias, g.dbias)};
  std::printf(
      "[ cmp ] rows %lld C %lld%s offset %g: y %.1e mean %.1e rstd %.1e dx %.1e dweight %.1e dbias %.1e\n",
      static_cast<long long>(c.rows), static_cast<long long>(c.channels), c.affine ? " affine" : "", c.offset,
      e[0], e[1], e[2], e[3], e[4], e[5]);
  for (int i = 0; i < 3; ++i) EXPECT_LE(e[i], kForwardTolerance) << i;
  for (int i = 3; i < 6; ++i) EXPECT_LE(e[i], kBackwardTolerance) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayerNorm,
                         ::testing::Values(Case{1, 1, true}, Case{37, 19, true}, Case{300, 257, false},
                                           Case{1000, 3, true},
                                           Case{5003, 67, true},  // 256 row blocks, uneven
                                           Case{70, 129, true, 1000.0}));

TEST(LayerNorm, ResidualFusedForwardMatchesAddThenNormalise) {
  const Case c{123, 45, true};
  const Data d = make_data(c, 3);
  std::mt19937_64 rng(4);
  const auto r = normal(rng, c.rows * c.channels);
  auto residual = nan_filled(c.rows * c.channels), y = nan_filled(c.rows * c.channels);
  auto mean = nan_filled(c.rows), rstd = nan_filled(c.rows);
  cpu::residual_layernorm_forward(residual.data(), y.data(), mean.data(), rstd.data(), d.x.data(), r.data(),
                                  d.weight.data(), d.bias.data(), c.rows, c.channels, kEps);
  std::vector<double> sum(residual.size());
  for (size_t i = 0; i < sum.size(); ++i)
    sum[i] = static_cast<double>(d.x[i] + r[i]);  // the fp32 sum, exactly
  const auto f = ref::layernorm_forward(sum, widen(d.weight), widen(d.bias), c.rows, c.channels, kEps);
  EXPECT_EQ(relative_rms(residual, sum), 0.0);
  EXPECT_LE(relative_rms(y, f.y), kForwardTolerance);
  EXPECT_LE(relative_rms(mean, f.mean), kForwardTolerance);
  EXPECT_LE(relative_rms(rstd, f.rstd), kForwardTolerance);

  // The residual stream updated in place (residual = x) gives the same bits.
  auto stream = d.x;
  auto y2 = nan_filled(c.rows * c.channels), mean2 = nan_filled(c.rows), rstd2 = nan_filled(c.rows);
  cpu::residual_layernorm_forward(stream.data(), y2.data(), mean2.data(), rstd2.data(), stream.data(),
                                  r.data(), d.weight.data(), d.bias.data(), c.rows, c.channels, kEps);
  EXPECT_TRUE(bit_equal(stream, residual));
  EXPECT_TRUE(bit_equal(y2, y));
}

TEST(LayerNorm, InPlaceForwardGivesTheSameBits) {
  const Case c{50, 33, true};
  const Data d = make_data(c, 5);
  const Result r = run_kernel(c, d);
  auto x = d.x;
  auto mean = nan_filled(c.rows), rstd = nan_filled(c.rows);
  cpu::layernorm_forward(x.data(), mean.data(), rstd.data(), x.data(), d.weight.data(), d.bias.data(), c.rows,
                         c.channels, kEps);
  EXPECT_TRUE(bit_equal(x, r.y));
}

TEST(LayerNorm, BackwardAccumulatesIntoEveryGradient) {
  const Case c{77, 21, true};
  const Data d = make_data(c, 6);
  const Result fresh = run_kernel(c, d);
  std::mt19937_64 rng(7);
  const auto dx0 = normal(rng, c.rows * c.channels), dw0 = normal(rng, c.channels),
             db0 = normal(rng, c.channels);
  auto dx = dx0, dw = dw0, db = db0;
  cpu::layernorm_backward(dx.data(), dw.data(), db.data(), d.dy.data(), d.x.data(), d.weight.data(),
                          fresh.mean.data(), fresh.rstd.data(), c.rows, c.channels);
  for (auto [got, start, alone] : {std::tuple{&dx, &dx0, &fresh.dx}, std::tuple{&dw, &dw0, &fresh.dweight},
                                   std::tuple{&db, &db0, &fresh.dbias}}) {
    std::vector<double> want(got->size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<double>((*start)[i]) + (*alone)[i];
    EXPECT_LE(relative_rms(*got, want), 1e-6);
  }
  // dweight and dbias may be skipped; dx is the same.
  std::vector<float> dx_only(dx.size(), 0.f);
  cpu::layernorm_backward(dx_only.data(), nullptr, nullptr, d.dy.data(), d.x.data(), d.weight.data(),
                          fresh.mean.data(), fresh.rstd.data(), c.rows, c.channels);
  EXPECT_TRUE(bit_equal(dx_only, fresh.dx));
}

TEST(LayerNorm, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t rows = 3, channels = 5;
  std::mt19937_64 rng(8);
  auto x = widen(normal(rng, rows * channels)), w = widen(normal(rng, channels, 0.3, 1.0));
  auto b = widen(normal(rng, channels));
  const auto dy = widen(normal(rng, rows * channels));
  auto loss = [&] {
    const auto y = ref::layernorm_forward(x, w, b, rows, channels, 1e-5).y;
    double s = 0.0;
    for (size_t i = 0; i < y.size(); ++i) s += dy[i] * y[i];
    return s;
  };
  const auto g = ref::layernorm_backward(dy, x, w, rows, channels, 1e-5);
  const double h = 1e-6;
  for (auto [param, grad] : {std::pair{&x, &g.dx}, std::pair{&w, &g.dweight}, std::pair{&b, &g.dbias}})
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

TEST(LayerNorm, BitIdenticalForAnyThreadCount) {
  const Case c{2001, 61, true};
  const Data d = make_data(c, 9);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result one = run_kernel(c, d);
  omp_set_num_threads(3);
  const Result three = run_kernel(c, d);
  omp_set_num_threads(threads);
  EXPECT_TRUE(bit_equal(one.y, three.y));
  EXPECT_TRUE(bit_equal(one.dx, three.dx));
  EXPECT_TRUE(bit_equal(one.dweight, three.dweight));
  EXPECT_TRUE(bit_equal(one.dbias, three.dbias));
}

TEST(LayerNorm, BadInputIsAnErrorNamingIt) {
  std::vector<float> buf(64, 1.f);
  float* p = buf.data();
  expect_error([&] { cpu::layernorm_forward(p, p, p, p, nullptr, nullptr, 2, 0, kEps); }, "channels = 0");
  expect_error([&] { cpu::layernorm_forward(p, p, p, p, nullptr, nullptr, -2, 3, kEps); }, "rows = -2");
  expect_error([&] { cpu::layernorm_forward(p, p, p, p, nullptr, nullptr, 2, 3, 0.f); }, "eps = 0");
  expect_error([&] { cpu::layernorm_forward(p, nullptr, p, p, nullptr, nullptr, 2, 3, kEps); },
               "mean is null");
  expect_error([&] { cpu::residual_layernorm_forward(p, p, p, p, p, nullptr, nullptr, nullptr, 2, 3, kEps); },
               "r is null");
  expect_error([&] { cpu::layernorm_backward(p, p, p, p, p, nullptr, p, nullptr, 2, 3); }, "rstd is null");
}

}  // namespace
