// The CUDA flash softmax attention's block programs (kernels/cuda/softmax_flash.h) run on the host, in the
// launch order of softmax_attention_cuda.cu, on emulated blocks (3 std::threads, and 256 as on the GPU in one
// case, with a std::barrier as __syncthreads, NaN-filled shared memory) and held to the fp64 reference (reference/softmax_reference.h):
// relative RMS error at most 1e-4 on out, lse, dq, dk and dv, over causal and bidirectional attention, full
// and windowed, key masks (including a fully padded row) and segment ids, T never a multiple of the tile
// (32). Runs in every build, with or without the CUDA toolkit; the GPU runs the same functions.
#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/softmax_flash.h"
#include "reference/softmax_reference.h"
#include "test_support.h"

namespace {

namespace flash = race::kernels::cuda::flash;

struct HostBlock {
  int id, count;
  std::barrier<>* barrier;
  int lane() const { return id; }
  int lanes() const { return count; }
  void sync() const { barrier->arrive_and_wait(); }
};

template <class Program>
void run_block(int lanes, int64_t head_dim, Program program) {
  flash::FlashShared layout;
  const int64_t bytes = flash::carve_flash_shared(nullptr, head_dim, lanes, &layout);
  std::vector<double> memory(static_cast<size_t>(bytes / 8 + 1), std::numeric_limits<double>::quiet_NaN());
  std::barrier<> barrier(lanes);
  std::vector<std::thread> threads;
  for (int lane = 0; lane < lanes; ++lane)
    threads.emplace_back([&, lane] { program(HostBlock{lane, lanes, &barrier}, reinterpret_cast<char*>(memory.data())); });
  for (auto& t : threads) t.join();
}

struct Case {
  int64_t B = 1, H = 1, T = 100, D = 16;
  bool causal = true;
  int64_t window = 0;
  bool mask = false;      // ~30% pad keys, and the last row all pads
  bool segments = false;

  std::string name() const {
    std::string n = "T";
    n += std::to_string(T);
    n += "_D";
    n += std::to_string(D);
    n += causal ? "_causal" : "_bidir";
    if (window > 0) {
      n += "_window";
      n += std::to_string(window);
    }
    if (mask) n += "_mask";
    if (segments) n += "_seg";
    n += "_B";
    n += std::to_string(B);
    n += "H";
    n += std::to_string(H);
    return n;
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

// Runs the programs for case c on blocks of `lanes` lanes and compares every output with the reference.
void expect_matches_reference(const Case& c, int lanes) {
  std::mt19937_64 rng(0xF1A5 + static_cast<uint64_t>(c.T * 7 + c.D));
  const int64_t n = c.B * c.H * c.T * c.D, bt = c.B * c.T;
  const auto q = race::test::normal(rng, n), k = race::test::normal(rng, n), v = race::test::normal(rng, n);
  const auto dout = race::test::normal(rng, n);
  std::vector<uint8_t> mask;
  std::vector<int32_t> segments;
  if (c.mask) {
    for (int64_t i = 0; i < bt; ++i) mask.push_back(rng() % 10 < 3 || (c.B > 1 && i >= bt - c.T) ? 0 : 1);
  }
  if (c.segments) {
    int32_t id = 3;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T;) {
        const int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(2, c.T / 3)));
        for (int64_t i = 0; i < len && t < c.T; ++i, ++t) segments.push_back(id);
        id = id == 3 ? 9 : 3;  // alternating ids: an id that recurs later is a new document
      }
  }

  flash::SoftmaxProblem<float> p{};
  p.batch = c.B;
  p.heads = c.H;
  p.seq_len = c.T;
  p.head_dim = c.D;
  p.causal = c.causal;
  p.window = c.window;
  p.scale = 1.f / std::sqrt(static_cast<float>(c.D));
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.dout = dout.data();
  p.key_mask = mask.empty() ? nullptr : mask.data();
  p.segment_ids = segments.empty() ? nullptr : segments.data();
  std::vector<int32_t> documents(static_cast<size_t>(bt), -1);
  p.documents = segments.empty() ? nullptr : documents.data();
  auto out = race::test::nan_filled(n), dq = race::test::nan_filled(n), dk = race::test::nan_filled(n),
       dv = race::test::nan_filled(n);
  auto lse = race::test::nan_filled(c.B * c.H * c.T), delta = race::test::nan_filled(c.B * c.H * c.T);
  p.out = out.data();
  p.lse = lse.data();
  p.delta = delta.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();

  if (p.documents != nullptr)
    for (int64_t b = 0; b < c.B; ++b)
      run_block(lanes, c.D, [&](const HostBlock& blk, char* smem) { flash::documents_row(blk, p, b, smem); });
  for (int program = 0; program < 3; ++program)
    for (int64_t row = 0; row < p.rows(); ++row)
      for (int64_t tile = 0; tile < p.tiles(); ++tile)
        run_block(lanes, c.D, [&](const HostBlock& blk, char* smem) {
          if (program == 0) flash::forward_tile(blk, p, row, tile, smem);
          if (program == 1) flash::backward_query_tile(blk, p, row, tile, smem);
          if (program == 2) flash::backward_key_tile(blk, p, row, tile, smem);
        });

  const race::kernels::SoftmaxAttentionShape shape{c.B, c.H, c.T, c.D};
  race::kernels::SoftmaxAttentionOptions options;
  options.causal = c.causal;
  options.window = c.window;
  const race::kernels::SoftmaxAttentionInputs inputs{q.data(), k.data(), v.data(), p.key_mask, p.segment_ids};
  const auto in64 = race::reference::to_fp64(shape, inputs);
  const auto ref = race::reference::softmax_attention_forward(shape, options, in64);
  const auto grads = race::reference::softmax_attention_backward(shape, options, in64, race::test::widen(dout));
  // -inf lse (queries that see no key) must match exactly; the rest by relative RMS.
  std::vector<float> lse_finite;
  std::vector<double> ref_lse_finite;
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(ref.lse[i])) {
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "query " << i << " sees no key: lse must be -inf";
    } else {
      lse_finite.push_back(lse[i]);
      ref_lse_finite.push_back(ref.lse[i]);
    }
  }
  const double e_out = race::test::relative_rms(out, ref.out), e_lse = race::test::relative_rms(lse_finite, ref_lse_finite);
  const double e_dq = race::test::relative_rms(dq, grads.dq), e_dk = race::test::relative_rms(dk, grads.dk);
  const double e_dv = race::test::relative_rms(dv, grads.dv);
  std::printf("[ cmp ] %-40s out %.1e lse %.1e dq %.1e dk %.1e dv %.1e\n", c.name().c_str(), e_out, e_lse, e_dq, e_dk,
              e_dv);
  for (double e : {e_out, e_lse, e_dq, e_dk, e_dv}) EXPECT_LE(e, 1e-4);
}

class SoftmaxFlashEmulation : public ::testing::TestWithParam<Case> {};

TEST_P(SoftmaxFlashEmulation, MatchesTheFp64Reference) { expect_matches_reference(GetParam(), 3); }

// The kernels' own lane count (256, more lanes than many steps have work items).
TEST(SoftmaxFlashEmulationLanes, TheKernelsLaneCountGivesTheSameResults) {
  expect_matches_reference({.B = 2, .T = 70, .causal = false, .window = 20, .mask = true, .segments = true}, 256);
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  for (bool causal : {true, false}) {
    cs.push_back({.T = 1, .causal = causal});
    cs.push_back({.T = 7, .D = 8, .causal = causal});
    cs.push_back({.T = 133, .causal = causal});
    cs.push_back({.T = 133, .causal = causal, .window = 40});
    cs.push_back({.B = 2, .H = 2, .T = 101, .causal = causal, .mask = true});
    cs.push_back({.T = 150, .D = 24, .causal = causal, .window = 33, .mask = true, .segments = true});
    cs.push_back({.B = 2, .T = 97, .D = 128, .causal = causal, .segments = true});
  }
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, SoftmaxFlashEmulation, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.name(); });

}  // namespace
