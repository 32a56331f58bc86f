// The CUDA RACE attention kernels' math, checked on the host: the chunk functions of
// kernels/cuda/race_tile.h against the fp64 reference, the span scan on a hand-made example, and the whole
// algorithm (race_span.h's block programs in the launch order of race_attention_cuda.cu) executed by a host
// emulation of CUDA blocks (host_block.h): each block is whole warps of lanes (fibers; 64 lanes, and 256 as on
// the GPU in two cases) sharing a NaN-filled buffer (the shared memory, so a read before a write shows) with a
// barrier as __syncthreads, and each warp emulates the tensor-core instruction of the tile products. The kernels
// run the same functions on the GPU with 256 lanes. Runs in every build, with or without the CUDA toolkit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "host_block.h"
#include "kernels/cuda/race_span.h"
#include "kernels/cuda/race_tile.h"
#include "race_cuda_cases.h"
#include "reference/race_reference.h"
#include "test_support.h"

namespace {

using race::kernels::cuda::Problem;
using race::kernels::cuda::Shared;
using race::kernels::cuda::SpanSums;
namespace tile = race::kernels::cuda::tile;
namespace kc = race::kernels::cuda;

using race::test::HostBlock;

// Runs program(block, shared memory) on one emulated block.
template <class Program>
void run_block(int lanes, const tile::Dims& dims, Program program) {
  Shared layout;
  const int64_t bytes = kc::carve_shared(nullptr, dims, lanes, &layout);
  std::vector<double> memory(static_cast<size_t>(bytes / 8 + 1), std::numeric_limits<double>::quiet_NaN());
  race::test::run_lanes(lanes, [&](const HostBlock& blk) { program(blk, reinterpret_cast<char*>(memory.data())); });
}

// A single tile function on one emulated warp (32 lanes).
template <class Function>
void on_one_warp(Function function) {
  race::test::run_lanes(race::test::kWarpLanes, function);
}

// Scratch of a Problem, NaN-filled so that a read of something never written shows.
struct HostScratch {
  std::vector<double> memory;
  HostScratch(bool backward, Problem<float>* p) {
    const int64_t bytes = kc::carve_scratch<float>(nullptr, backward, p);
    memory.assign(static_cast<size_t>(bytes / 8 + 1), std::numeric_limits<double>::quiet_NaN());
    kc::carve_scratch<float>(reinterpret_cast<char*>(memory.data()), backward, p);
  }
};

Problem<float> problem_of(const race::test::RaceCaseData& d, int64_t span_chunks) {
  Problem<float> p{};
  p.dims = tile::Dims{d.shape.seq_len, d.shape.head_dim, d.shape.tables, d.shape.bits};
  p.batch = d.shape.batch;
  p.heads = d.shape.heads;
  p.planes_per_head = d.shape.planes_per_head;
  p.causal = d.options.causal;
  p.ratio = d.options.estimator == race::kernels::RaceEstimator::ratio;
  p.eps = d.options.eps;
  p.span_chunks = span_chunks;
  p.spans = kc::plan_spans(d.shape.seq_len, span_chunks);
  const auto in = d.inputs();
  p.q = in.q;
  p.k = in.k;
  p.v = in.v;
  p.dout = d.dout.data();
  p.planes = in.planes;
  p.beta = in.beta;
  p.key_mask = in.key_mask;
  p.segment_ids = in.segment_ids;
  return p;
}

// Each block program over every (row, span), in block order.
template <class Program>
void run_blocks(const Problem<float>& p, int lanes, Program program) {
  for (int64_t block = 0; block < p.rows() * p.spans; ++block)
    run_block(lanes, p.dims, [&](const HostBlock& blk, char* smem) { program(blk, block / p.spans, block % p.spans, smem); });
}

void scan(const Problem<float>& p, const SpanSums& sums) {
  for (int64_t row = 0; row < p.rows(); ++row)
    for (int64_t e = 0; e < p.dims.state_size(); ++e) kc::scan_spans(sums, p.spans, p.dims.state_size(), row, e);
}

// The forward and backward launch sequences of race_attention_cuda.cu, on emulated blocks. in_place: the
// backward writes dq, dk, dv over its own copies of q, k, v, as race_attention_cuda.h allows.
race::test::RaceResult emulate(const race::test::RaceCaseData& d, int lanes, int64_t span_chunks,
                               bool in_place = false) {
  race::test::RaceResult r;
  const int64_t n = d.size();
  r.out = r.dq = r.dk = r.dv = race::test::nan_filled(n);
  r.dbeta = race::test::nan_filled(d.shape.heads);
  {
    Problem<float> p = problem_of(d, span_chunks);
    HostScratch scratch(false, &p);
    p.out = r.out.data();
    run_blocks(p, lanes, [&](const HostBlock& b, int64_t row, int64_t i, char* s) { kc::key_span_sums(b, p, row, i, s); });
    scan(p, p.keys);
    run_blocks(p, lanes, [&](const HostBlock& b, int64_t row, int64_t i, char* s) { kc::forward_span(b, p, row, i, s); });
  }
  Problem<float> p = problem_of(d, span_chunks);
  HostScratch scratch(true, &p);
  if (in_place) {
    r.dq = d.q;
    r.dk = d.k;
    r.dv = d.v;
    p.q = r.dq.data();
    p.k = r.dk.data();
    p.v = r.dv.data();
  }
  p.dq = r.dq.data();
  p.dk = r.dk.data();
  p.dv = r.dv.data();
  run_blocks(p, lanes, [&](const HostBlock& b, int64_t row, int64_t i, char* s) { kc::key_span_sums(b, p, row, i, s); });
  scan(p, p.keys);
  run_blocks(p, lanes, [&](const HostBlock& b, int64_t row, int64_t i, char* s) { kc::backward_queries_span(b, p, row, i, s); });
  scan(p, p.queries);
  run_blocks(p, lanes, [&](const HostBlock& b, int64_t row, int64_t i, char* s) { kc::backward_keys_span(b, p, row, i, s); });
  for (int64_t h = 0; h < p.heads; ++h) kc::reduce_dbeta(p, h, r.dbeta.data());
  return r;
}

TEST(RaceTile, SoftHashMatchesTheReference) {
  std::mt19937_64 rng(11);
  const tile::Dims d{9, 16, 3, 3};
  const int64_t n = 9, D = d.head_dim, S = d.buckets(), lp = d.projections();
  const auto x = race::test::normal(rng, n * D, 0.3);
  const auto planes = race::test::normal(rng, lp * D);
  const std::vector<uint8_t> pad = {1, 1, 0, 1, 1, 1, 1, 0, 1};
  const float beta = 0.7f;
  std::vector<float> u(n * lp), phi(n * S);
  on_one_warp([&](const HostBlock& blk) { tile::hash_projections(blk, d, planes.data(), x.data(), n, u.data()); });
  on_one_warp([&](const HostBlock& blk) { tile::hash_features(blk, d, beta, u.data(), n, pad.data(), phi.data()); });
  const auto planes64 = race::test::widen(planes);
  for (int64_t i = 0; i < n; ++i) {
    const auto x64 = race::test::widen(std::vector<float>(x.begin() + i * D, x.begin() + (i + 1) * D));
    const auto want = race::reference::soft_hash(x64.data(), planes64.data(), d.tables, d.bits, D, beta);
    for (int64_t s = 0; s < S; ++s) EXPECT_NEAR(phi[i * S + s], pad[i] ? want[s] : 0.0, 1e-6) << i << " " << s;
  }
}

TEST(RaceTile, SoftHashBackwardMatchesTheReference) {
  std::mt19937_64 rng(12);
  const tile::Dims d{5, 24, 2, 4};
  const int64_t n = 5, D = d.head_dim, S = d.buckets(), lp = d.projections();
  const auto x = race::test::normal(rng, n * D, 0.3);
  const auto planes = race::test::normal(rng, lp * D);
  const auto dphi = race::test::normal(rng, n * S);
  const float beta = 1.3f;
  std::vector<float> u(n * lp), phi(n * S), dz(n * lp), dx(n * D);
  std::vector<double> lane_dbeta(race::test::kWarpLanes);
  on_one_warp([&](const HostBlock& blk) { tile::hash_projections(blk, d, planes.data(), x.data(), n, u.data()); });
  on_one_warp([&](const HostBlock& blk) { tile::hash_features(blk, d, beta, u.data(), n, nullptr, phi.data()); });
  on_one_warp([&](const HostBlock& blk) {
    lane_dbeta[blk.lane()] =
        tile::hash_backward_projections(blk, d, beta, dphi.data(), phi.data(), u.data(), n, dz.data());
  });
  on_one_warp([&](const HostBlock& blk) { tile::hash_backward_input(blk, d, planes.data(), dz.data(), n, dx.data()); });
  double dbeta = 0.0;
  for (double part : lane_dbeta) dbeta += part;
  const auto planes64 = race::test::widen(planes);
  const auto dphi64 = race::test::widen(dphi);
  std::vector<double> want_dx(n * D, 0.0);
  double want_dbeta = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const auto x64 = race::test::widen(std::vector<float>(x.begin() + i * D, x.begin() + (i + 1) * D));
    want_dbeta += race::reference::soft_hash_backward(x64.data(), planes64.data(), d.tables, d.bits, D, beta,
                                                      dphi64.data() + i * S, want_dx.data() + i * D);
  }
  EXPECT_LE(race::test::relative_rms(dx, want_dx), 1e-5);
  EXPECT_NEAR(dbeta, want_dbeta, 1e-5 * std::fabs(want_dbeta) + 1e-6);
}

// Spans 0..3 of one row, has_start {1, 0, 1, 0}: span 1 continues span 0's document, span 3 continues
// span 2's. carry_in[i] = tail[i-1] (+ carry_in[i-1] when span i-1 has no start), carry_out mirrored.
TEST(RaceTile, ScanCarriesStateAcrossSpansWithinDocuments) {
  std::vector<float> head = {100, 1, 200, 2}, tail = {10, 20, 30, 40}, in(4), out(4);
  std::vector<int32_t> has_start = {1, 0, 1, 0};
  const SpanSums sums{head.data(), tail.data(), in.data(), out.data(), has_start.data()};
  kc::scan_spans(sums, 4, 1, 0, 0);
  EXPECT_EQ(in, (std::vector<float>{0, 10, 30, 30}));
  // carry_out[3] = 0; [2] = head[3] = 2; [1] = head[2] = 200 (span 2 starts a document: no chaining);
  // [0] = head[1] + carry_out[1] = 1 + 200 (span 1 has no start, so span 0's document runs through it).
  EXPECT_EQ(out, (std::vector<float>{201, 200, 2, 0}));
}

TEST(RaceTile, PlanCoversTheRowWithAbout1024Blocks) {
  EXPECT_EQ(kc::plan_span_chunks(4, int64_t{1} << 20), 128);  // 32768 chunks over 256 spans per row
  EXPECT_EQ(kc::plan_spans(int64_t{1} << 20, 128), 256);
  EXPECT_EQ(kc::plan_span_chunks(1, 33), 1);  // 2 chunks, one per span
  EXPECT_EQ(kc::plan_spans(33, 1), 2);
  EXPECT_EQ(kc::plan_span_chunks(4096, 100), 4);  // more rows than 1024: one span per row
}

class RaceCudaEmulation : public ::testing::TestWithParam<race::test::RaceCase> {};

// Spans of 1 to 3 chunks so that every case crosses spans (and documents cross span edges); two warps, so the
// tile products' split over warps is exercised.
TEST_P(RaceCudaEmulation, MatchesTheFp64Reference) {
  const race::test::RaceCase& c = GetParam();
  const auto d = race::test::make_race_case(c, 0x5EED + static_cast<uint64_t>(c.T * 31 + c.D));
  const int64_t span_chunks = 1 + c.T % 3;
  const auto got = emulate(d, 64, span_chunks);
  std::string label = c.name();
  label += "_span";
  label += std::to_string(span_chunks);
  race::test::expect_matches_reference(label, d, got, race::test::race_reference(d), 1e-4);
}

// The kernels' own lane count (256, more lanes than many steps have work items), on two small cases with
// every feature that changes control flow: segments, masks, both directions, several spans.
TEST(RaceCudaEmulationLanes, TheKernelsLaneCountGivesTheSameResults) {
  for (bool causal : {true, false}) {
    const race::test::RaceCase c{.B = 1, .H = 2, .T = 75, .causal = causal, .mask = true, .segments = true,
                                 .learned = true};
    const auto d = race::test::make_race_case(c, 99);
    const auto got = emulate(d, 256, 1);
    race::test::expect_matches_reference(c.name() + "_lanes256", d, got, race::test::race_reference(d), 1e-4);
  }
}

// Gradients written over the inputs (race-bench --in-place): each block must read a chunk of q, or of k and
// v, before it writes that chunk's gradient, and no later launch may read them. Both directions, documents
// crossing spans, a mask. (Aliasing k with dq instead, which breaks that order, fails here.)
TEST(RaceCudaEmulationInPlace, GradientsOverTheInputsMatchTheReference) {
  for (bool causal : {true, false}) {
    const race::test::RaceCase c{.B = 2, .H = 1, .T = 101, .causal = causal, .mask = true, .segments = true};
    const auto d = race::test::make_race_case(c, 7);
    const auto got = emulate(d, 64, 2, true);
    race::test::expect_matches_reference(c.name() + "_in_place", d, got, race::test::race_reference(d), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RaceCudaEmulation, ::testing::ValuesIn(race::test::race_cuda_cases()),
                         [](const auto& param_info) { return param_info.param.name(); });

}  // namespace
