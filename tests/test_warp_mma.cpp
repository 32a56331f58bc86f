// The tensor-core tile products of kernels/cuda/warp_mma.h on the host: the tf32 rounding against the rule the
// PTX ISA documents for cvt.rna.tf32.f32, and mma::gemm on emulated blocks (host_block.h, which decodes the
// fragments with the documented m16n8k8 layout) against an fp64 GEMM, for sizes that are not multiples of the
// 16 x 8 x 8 tile, both storage orders of each operand, operands surrounded by NaN (a read outside the matrix
// shows) and one or two terms. Runs in every build, with or without the CUDA toolkit.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "host_block.h"
#include "kernels/cuda/warp_mma.h"
#include "test_support.h"

namespace {

namespace mma = race::kernels::cuda::mma;

float from_bits(uint32_t bits) { return mma::bits_float(bits); }

TEST(WarpMma, Tf32RoundsToNearestWithTiesAwayFromZero) {
  const float ulp = std::ldexp(1.f, -10);  // tf32's spacing in [1, 2)
  EXPECT_EQ(from_bits(mma::to_tf32(1.f)), 1.f);
  // Exactly half way between 1 and 1 + ulp: away from zero (ties to even would give 1).
  EXPECT_EQ(from_bits(mma::to_tf32(1.f + ulp / 2)), 1.f + ulp);
  EXPECT_EQ(from_bits(mma::to_tf32(-(1.f + ulp / 2))), -(1.f + ulp));
  // Just below and above half way.
  EXPECT_EQ(from_bits(mma::to_tf32(std::nextafter(1.f + ulp / 2, 0.f))), 1.f);
  EXPECT_EQ(from_bits(mma::to_tf32(std::nextafter(1.f + ulp / 2, 2.f))), 1.f + ulp);
  // A carry into the exponent, the low 13 bits always cleared, infinities kept, NaN stays NaN.
  EXPECT_EQ(from_bits(mma::to_tf32(std::nextafter(2.f, 0.f))), 2.f);
  EXPECT_EQ(mma::to_tf32(0.1f) & 0x1fffu, 0u);
  EXPECT_EQ(from_bits(mma::to_tf32(std::numeric_limits<float>::infinity())), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(from_bits(mma::to_tf32(std::numeric_limits<float>::quiet_NaN()))));
  // The 3xTF32 split: big + small is x to about 2^-22 relative, and both are tf32 values.
  std::mt19937_64 rng(3);
  for (float x : race::test::normal(rng, 1000)) {
    const mma::Split s = mma::split(x);
    EXPECT_EQ(s.big & 0x1fffu, 0u);
    EXPECT_EQ(s.small & 0x1fffu, 0u);
    EXPECT_LE(std::fabs(double(from_bits(s.big)) + double(from_bits(s.small)) - double(x)),
              std::ldexp(std::fabs(double(x)), -22));
  }
}

// One operand stored in a NaN-filled buffer with a leading dimension 3 wider than needed: row-major (rows, cols),
// or as the transpose of a row-major (cols, rows) matrix.
struct Stored {
  std::vector<float> buffer;
  std::vector<double> value;  // (rows, cols) row-major, what the view should read
  mma::View view;
};

Stored make_operand(std::mt19937_64& rng, int64_t rows, int64_t cols, bool transposed) {
  Stored s;
  const int64_t outer = transposed ? cols : rows, inner = transposed ? rows : cols, ld = inner + 3;
  s.buffer.assign(static_cast<size_t>(outer * ld + 5), std::numeric_limits<float>::quiet_NaN());
  s.value.assign(static_cast<size_t>(rows * cols), 0.0);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float x = dist(rng);
      s.buffer[static_cast<size_t>(transposed ? c * ld + r : r * ld + c)] = x;
      s.value[static_cast<size_t>(r * cols + c)] = x;
    }
  s.view = transposed ? mma::View{s.buffer.data(), rows, cols, 1, ld} : mma::View{s.buffer.data(), rows, cols, ld, 1};
  return s;
}

struct Shape {
  int64_t m, n, k;
};

// out (m, n) = a1 b1 (+ a2 b2, depth k + 5) on `lanes` emulated lanes against fp64, each element stored once.
void check_gemm(const Shape& shape, bool a_transposed, bool b_transposed, int terms, int lanes) {
  std::mt19937_64 rng(static_cast<uint64_t>(shape.m * 1000003 + shape.n * 1009 + shape.k * 7 + terms));
  const int64_t m = shape.m, n = shape.n;
  std::vector<Stored> a, b;
  for (int t = 0; t < terms; ++t) {
    const int64_t k = shape.k + 5 * t;
    a.push_back(make_operand(rng, m, k, a_transposed));
    b.push_back(make_operand(rng, k, n, b_transposed != (t == 1)));
  }
  std::vector<double> want(static_cast<size_t>(m * n), 0.0);
  for (int t = 0; t < terms; ++t) {
    const int64_t k = shape.k + 5 * t;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < k; ++c) want[i * n + j] += a[t].value[i * k + c] * b[t].value[c * n + j];
  }
  std::vector<mma::Term> views;
  for (int t = 0; t < terms; ++t) views.push_back({a[t].view, b[t].view});
  std::vector<float> got(static_cast<size_t>(m * n), std::numeric_limits<float>::quiet_NaN());
  std::vector<std::atomic<int>> stores(static_cast<size_t>(m * n));
  race::test::run_lanes(lanes, [&](const race::test::HostBlock& blk) {
    mma::gemm(blk, m, n, views.data(), terms, [&](int64_t i, int64_t j, float value) {
      got[static_cast<size_t>(i * n + j)] = value;
      ++stores[static_cast<size_t>(i * n + j)];
    });
  });
  const std::string label = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(shape.k) +
                            (a_transposed ? " a^T" : " a") + (b_transposed ? " b^T" : " b") + " terms " +
                            std::to_string(terms) + " lanes " + std::to_string(lanes);
  for (const auto& s : stores) ASSERT_EQ(s.load(), 1) << label;
  // 3xTF32 keeps about fp32's accuracy; one plain tf32 product would be near 1e-3.
  EXPECT_LE(race::test::relative_rms(got, want), 2e-6) << label;
  double worst = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::fmax(worst, std::fabs(double(got[i]) - want[i]));
    scale = std::fmax(scale, std::fabs(want[i]));
  }
  EXPECT_LE(worst, 1e-5 * std::fmax(scale, 1.0)) << label;
}

TEST(WarpMma, TileProductsMatchAnFp64Gemm) {
  for (const Shape& shape : {Shape{5, 3, 7}, Shape{17, 9, 13}, Shape{32, 24, 128}, Shape{1, 1, 1}, Shape{16, 8, 8},
                             Shape{32, 32, 24}})
    for (bool a_transposed : {false, true})
      for (bool b_transposed : {false, true}) check_gemm(shape, a_transposed, b_transposed, 1, 64);
}

TEST(WarpMma, TwoTermsAndAnyWarpCount) {
  for (int lanes : {32, 64, 256}) {
    check_gemm({17, 9, 13}, false, true, 2, lanes);
    check_gemm({32, 24, 128}, true, false, 2, lanes);
  }
}

// On the GPU a warp whose lanes disagree on the number of mma.sync calls (or a barrier some lane skips) hangs
// or is undefined; the emulation stops with a message instead.
TEST(WarpMmaDeathTest, TheHostBlockStopsALaneThatWaitsForever) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(race::test::run_lanes(64, [](const race::test::HostBlock& blk) {
                 if (blk.lane() != 5) blk.sync();
               }),
               "deadlock");
  EXPECT_DEATH(race::test::run_lanes(32, [](const race::test::HostBlock& blk) {
                 float d[4] = {};
                 const uint32_t a[4] = {}, b[2] = {};
                 if (blk.warp_lane() < 31) blk.mma_tf32(d, a, b);
               }),
               "deadlock");
}

}  // namespace
