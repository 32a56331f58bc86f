// The CPU embedding lookup (kernels/cpu/embedding_cpu.h) held to the fp64 reference
// (reference/embedding_reference.h): the forward copies exactly (and adds within 1e-5 when accumulating);
// the backward's scatter-add, with ids repeated many times, is within 1e-4 and bit-identical to a plain
// sequential fp32 loop for 1 and 3 threads (each row of dtable receives its updates in position order).
// Also: the reference backward against finite differences, accumulation into dtable, and ids out of range
// named with their position, before anything is written.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/embedding_cpu.h"
#include "reference/embedding_reference.h"
#include "test_support.h"

namespace {

using race::test::normal;
using race::test::widen;
using race::test::relative_rms;
using race::test::expect_error;
using race::test::bit_equal;

namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return ids;
}

struct Case {
  int64_t n, vocab, channels;
};

class Embedding : public ::testing::TestWithParam<Case> {};

TEST_P(Embedding, MatchesTheFp64Reference) {
  const auto [n, vocab, channels] = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(n * 31 + vocab * 7 + channels));
  const auto ids = random_ids(rng, n, vocab);
  const auto table = normal(rng, vocab * channels), dout = normal(rng, n * channels);
  std::vector<float> out(static_cast<size_t>(n * channels), -1.f);
  cpu::embedding_forward(out.data(), ids.data(), table.data(), n, vocab, channels, false);
  EXPECT_EQ(relative_rms(out, ref::embedding_forward(ids, widen(table), channels)), 0.0);

  const auto positions = normal(rng, n * channels);  // a second table's rows, added on top
  auto sum = positions;
  cpu::embedding_forward(sum.data(), ids.data(), table.data(), n, vocab, channels, true);
  auto want_sum = ref::embedding_forward(ids, widen(table), channels);
  for (size_t i = 0; i < want_sum.size(); ++i) want_sum[i] += positions[i];
  EXPECT_LE(relative_rms(sum, want_sum), 1e-5);

  std::vector<float> dtable(static_cast<size_t>(vocab * channels), 0.f);
  cpu::embedding_backward(dtable.data(), ids.data(), dout.data(), n, vocab, channels);
  const double e = relative_rms(dtable, ref::embedding_backward(ids, widen(dout), vocab, channels));
  std::printf("[ cmp ] n %lld V %lld C %lld: dtable %.1e\n", static_cast<long long>(n),
              static_cast<long long>(vocab), static_cast<long long>(channels), e);
  EXPECT_LE(e, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Embedding,
                         ::testing::Values(Case{1, 1, 1}, Case{37, 11, 19},
                                           Case{2000, 7, 37},  // ids repeat ~300x
                                           Case{1000, 300, 64}, Case{5, 3, 1}));

TEST(Embedding, BackwardAccumulatesInPositionOrderForAnyThreadCount) {
  const int64_t n = 3001, vocab = 13, channels = 70;
  std::mt19937_64 rng(5);
  const auto ids = random_ids(rng, n, vocab);
  const auto dout = normal(rng, n * channels), start = normal(rng, vocab * channels);
  auto sequential = start;  // the plain loop, fp32, n = 0, 1, ...
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < channels; ++c) sequential[ids[i] * channels + c] += dout[i * channels + c];
  const int threads = omp_get_max_threads();
  for (int t : {1, 3}) {
    omp_set_num_threads(t);
    auto dtable = start;
    cpu::embedding_backward(dtable.data(), ids.data(), dout.data(), n, vocab, channels);
    EXPECT_TRUE(bit_equal(dtable, sequential)) << t << " threads";
  }
  omp_set_num_threads(threads);
}

TEST(Embedding, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t n = 6, vocab = 4, channels = 3;
  std::mt19937_64 rng(6);
  const auto ids = random_ids(rng, n, vocab);
  auto table = widen(normal(rng, vocab * channels));
  const auto dout = widen(normal(rng, n * channels));
  auto loss = [&] {
    const auto out = ref::embedding_forward(ids, table, channels);
    double s = 0.0;
    for (size_t i = 0; i < out.size(); ++i) s += dout[i] * out[i];
    return s;
  };
  const auto g = ref::embedding_backward(ids, dout, vocab, channels);
  for (size_t i = 0; i < table.size(); ++i) {
    const double saved = table[i], h = 1e-3;
    table[i] = saved + h;
    const double up = loss();
    table[i] = saved - h;
    const double down = loss();
    table[i] = saved;
    EXPECT_NEAR((up - down) / (2 * h), g[i], 1e-9);
  }
}

TEST(Embedding, IdsOutOfRangeAreNamedAndNothingIsWritten) {
  const int64_t vocab = 5, channels = 2;
  std::vector<float> table(static_cast<size_t>(vocab * channels), 1.f), out(8, 7.f),
      dtable(table.size(), 3.f);
  const std::vector<int32_t> negative = {0, 1, 2, -1}, too_big = {0, 5, 1, 2};
  expect_error(
      [&] { cpu::embedding_forward(out.data(), negative.data(), table.data(), 4, vocab, channels, false); },
      "id -1 at position 3 is outside the vocabulary [0, 5)");
  expect_error(
      [&] { cpu::embedding_backward(dtable.data(), too_big.data(), out.data(), 4, vocab, channels); },
      "id 5 at position 1 is outside the vocabulary [0, 5)");
  for (float v : out) EXPECT_EQ(v, 7.f);
  for (float v : dtable) EXPECT_EQ(v, 3.f);
  expect_error(
      [&] { cpu::embedding_forward(out.data(), negative.data(), table.data(), 4, 0, channels, false); },
      "vocab = 0");
  expect_error([&] { cpu::embedding_forward(out.data(), negative.data(), table.data(), 4, vocab, 0, false); },
               "channels = 0");
  expect_error([&] { cpu::embedding_forward(out.data(), nullptr, table.data(), 4, vocab, channels, false); },
               "ids is null");
}

}  // namespace
