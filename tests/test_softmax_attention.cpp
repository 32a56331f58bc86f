// Softmax attention: the fp64 reference against finite differences, the flash-style CPU kernel against the
// reference (tile-unaligned shapes, causal/bidirectional, windows, key masks, segments), invariants
// (causal = bidirectional at the last position, bit-identical reruns for any thread count) and input checks.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/softmax_attention_cpu.h"
#include "reference/softmax_reference.h"

namespace {

using race::kernels::SoftmaxAttentionGradients;
using race::kernels::SoftmaxAttentionInputs;
using race::kernels::SoftmaxAttentionOptions;
using race::kernels::SoftmaxAttentionShape;
namespace cpu = race::kernels::cpu;
namespace ref = race::reference;

enum class Segments { none, runs, recurring };  // recurring: ids cycle 0, 1, 2; a repeat is a new document

struct Case {
  const char* name;
  int64_t batch, heads, seq_len, head_dim;
  bool causal;
  int64_t window = 0;
  bool key_mask = false;
  Segments segments = Segments::none;
  float amplitude = 1.f;  // standard deviation of q and k
  float scale = 0.f;
};

// fp32 inputs with owned storage.
struct Problem {
  SoftmaxAttentionShape shape;
  SoftmaxAttentionOptions options;
  std::vector<float> q, k, v, dout;   // (B, H, T, D)
  std::vector<uint8_t> key_mask;      // (B, T) or empty
  std::vector<int32_t> segment_ids;   // (B, T) or empty

  SoftmaxAttentionInputs inputs() const {
    return {q.data(), k.data(), v.data(), key_mask.empty() ? nullptr : key_mask.data(),
            segment_ids.empty() ? nullptr : segment_ids.data()};
  }
  int64_t size() const { return shape.batch * shape.heads * shape.seq_len * shape.head_dim; }
  int64_t queries() const { return shape.batch * shape.heads * shape.seq_len; }
};

Problem make_problem(const Case& c, uint32_t seed) {
  Problem p;
  p.shape = {c.batch, c.heads, c.seq_len, c.head_dim};
  p.options.causal = c.causal;
  p.options.window = c.window;
  p.options.scale = c.scale;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const auto n = static_cast<size_t>(p.size());
  for (auto* x : {&p.q, &p.k, &p.v, &p.dout}) {
    x->resize(n);
    const float sd = (x == &p.q || x == &p.k) ? c.amplitude : 1.f;
    for (float& value : *x) value = sd * normal(rng);
  }
  const auto rows = static_cast<size_t>(c.batch * c.seq_len);
  if (c.key_mask) {
    std::bernoulli_distribution pad(0.2);
    p.key_mask.resize(rows);
    for (uint8_t& m : p.key_mask) m = pad(rng) ? 0 : 1;
    p.key_mask[0] = 0;  // under a causal mask, query 0 of row 0 then sees no key at all
  }
  if (c.segments != Segments::none) {
    p.segment_ids.resize(rows);
    std::uniform_int_distribution<int64_t> run_length(1, std::max<int64_t>(2, c.seq_len / 4));
    for (int64_t b = 0; b < c.batch; ++b) {
      int32_t run = 0;
      for (int64_t t = 0; t < c.seq_len; ++run) {
        const int32_t id = c.segments == Segments::recurring ? run % 3 : run;
        for (int64_t end = std::min(c.seq_len, t + run_length(rng)); t < end; ++t) {
          p.segment_ids[static_cast<size_t>(b * c.seq_len + t)] = id;
        }
      }
    }
  }
  return p;
}

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

Result run_kernel(const Problem& p) {
  Result r;
  const auto n = static_cast<size_t>(p.size());
  r.out.resize(n);
  r.lse.resize(static_cast<size_t>(p.queries()));
  r.dq.resize(n);
  r.dk.resize(n);
  r.dv.resize(n);
  cpu::softmax_attention_forward(p.shape, p.options, p.inputs(), r.out.data(), r.lse.data());
  cpu::softmax_attention_backward(p.shape, p.options, p.inputs(), r.out.data(), r.lse.data(), p.dout.data(),
                                  {r.dq.data(), r.dk.data(), r.dv.data()});
  return r;
}

// ||ours - ref|| / ||ref||. Where the reference is identically zero (dq and dk when every query sees one key),
// the RMS of ours instead: its fp32 rounding noise.
double relative_rms_error(const std::vector<float>& ours, const std::vector<double>& reference) {
  double diff = 0.0;
  double norm = 0.0;
  for (size_t i = 0; i < ours.size(); ++i) {
    diff += (double(ours[i]) - reference[i]) * (double(ours[i]) - reference[i]);
    norm += reference[i] * reference[i];
  }
  return norm > 1e-20 ? std::sqrt(diff / norm) : std::sqrt(diff / double(std::max<size_t>(ours.size(), 1)));
}

// ---------------------------------------------------------------------------------------------------------
// The reference backward against central differences of the reference forward.

double loss(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options, const ref::SoftmaxInputs& x,
            const std::vector<double>& dout) {
  const std::vector<double> out = ref::softmax_attention_forward(shape, options, x).out;
  double sum = 0.0;
  for (size_t i = 0; i < out.size(); ++i) sum += dout[i] * out[i];
  return sum;
}

struct GradientCase {
  const char* name;
  bool causal;
  int64_t window = 0;
  bool key_mask = false;
  Segments segments = Segments::none;
};

TEST(SoftmaxReference, BackwardMatchesFiniteDifferences) {
  const GradientCase cases[] = {
      {"causal", true},
      {"bidirectional", false},
      {"causal_window2", true, 2},
      {"bidirectional_window2", false, 2},
      {"causal_key_mask", true, 0, true},
      {"bidirectional_segments", false, 0, false, Segments::recurring},
      {"causal_window3_mask_segments", true, 3, true, Segments::runs},
  };
  for (const GradientCase& gc : cases) {
    SCOPED_TRACE(gc.name);
    const Case c{gc.name, 2, 2, 6, 3, gc.causal, gc.window, gc.key_mask, gc.segments};
    const Problem p = make_problem(c, 7);
    ref::SoftmaxInputs x = ref::to_fp64(p.shape, p.inputs());
    const std::vector<double> dout(p.dout.begin(), p.dout.end());
    const ref::SoftmaxGradients grads = ref::softmax_attention_backward(p.shape, p.options, x, dout);

    const double h = 1e-5;
    const std::pair<std::vector<double>*, const std::vector<double>*> params[] = {
        {&x.q, &grads.dq}, {&x.k, &grads.dk}, {&x.v, &grads.dv}};
    for (const auto& [param, grad] : params) {
      for (size_t i = 0; i < param->size(); ++i) {
        const double saved = (*param)[i];
        (*param)[i] = saved + h;
        const double plus = loss(p.shape, p.options, x, dout);
        (*param)[i] = saved - h;
        const double minus = loss(p.shape, p.options, x, dout);
        (*param)[i] = saved;
        const double numeric = (plus - minus) / (2 * h);
        EXPECT_NEAR((*grad)[i], numeric, 1e-7 * (1.0 + std::abs(numeric))) << "element " << i;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The CPU kernel against the reference.

class SoftmaxKernel : public testing::TestWithParam<Case> {};

TEST_P(SoftmaxKernel, MatchesReference) {
  const Case& c = GetParam();
  const Problem p = make_problem(c, 1234);
  const Result ours = run_kernel(p);
  const ref::SoftmaxInputs x = ref::to_fp64(p.shape, p.inputs());
  const ref::SoftmaxForward forward = ref::softmax_attention_forward(p.shape, p.options, x);
  const ref::SoftmaxGradients grads =
      ref::softmax_attention_backward(p.shape, p.options, x, std::vector<double>(p.dout.begin(), p.dout.end()));

  EXPECT_LE(relative_rms_error(ours.out, forward.out), 1e-5);
  EXPECT_LE(relative_rms_error(ours.dq, grads.dq), 1e-4);
  EXPECT_LE(relative_rms_error(ours.dk, grads.dk), 1e-4);
  EXPECT_LE(relative_rms_error(ours.dv, grads.dv), 1e-4);

  // lse: -inf exactly where the query sees no key (and then out = 0, dq = 0); elsewhere close.
  const int64_t D = c.head_dim;
  std::vector<float> finite_ours;
  std::vector<double> finite_ref;
  for (int64_t i = 0; i < p.queries(); ++i) {
    if (std::isinf(forward.lse[i])) {
      EXPECT_EQ(ours.lse[i], -std::numeric_limits<float>::infinity()) << "query " << i;
      for (int64_t d = 0; d < D; ++d) {
        EXPECT_EQ(ours.out[i * D + d], 0.f) << "query " << i;
        EXPECT_EQ(ours.dq[i * D + d], 0.f) << "query " << i;
      }
    } else {
      finite_ours.push_back(ours.lse[i]);
      finite_ref.push_back(forward.lse[i]);
    }
  }
  EXPECT_LE(relative_rms_error(finite_ours, finite_ref), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SoftmaxKernel,
    testing::Values(Case{"t1_causal", 2, 3, 1, 16, true},
                    Case{"t7_bidirectional_mask", 2, 2, 7, 16, false, 0, true},
                    Case{"t7_causal_window1", 1, 2, 7, 128, true, 1},
                    Case{"t7_bidirectional_window1", 1, 1, 7, 64, false, 1},
                    Case{"t63_causal_segments", 2, 2, 63, 64, true, 0, false, Segments::runs},
                    Case{"t65_bidirectional_window16", 1, 3, 65, 64, false, 16},
                    Case{"t65_causal_d40_mask", 2, 1, 65, 40, true, 0, true},
                    Case{"t65_bidirectional_d5_recurring_segments", 1, 1, 65, 5, false, 0, false,
                         Segments::recurring},
                    Case{"t65_causal_scale", 1, 1, 65, 16, true, 0, false, Segments::none, 1.f, 0.3f},
                    Case{"t500_causal_window100_mask", 1, 2, 500, 64, true, 100, true},
                    Case{"t500_bidirectional_mask_segments", 2, 1, 500, 128, false, 0, true, Segments::recurring},
                    Case{"t500_causal_large_scores", 1, 1, 500, 64, true, 0, false, Segments::none, 4.f},
                    Case{"t1000_causal", 1, 1, 1000, 128, true},
                    Case{"t1000_bidirectional", 1, 1, 1000, 64, false},
                    Case{"t1000_bidirectional_window100", 1, 2, 1000, 16, false, 100},
                    Case{"t1000_causal_window16_segments", 1, 1, 1000, 64, true, 16, false, Segments::runs}),
    [](const testing::TestParamInfo<Case>& param) { return std::string(param.param.name); });

// ---------------------------------------------------------------------------------------------------------
// Invariants.

TEST(SoftmaxKernel, BidirectionalEqualsCausalAtLastPosition) {
  Problem causal = make_problem(Case{"last", 2, 2, 300, 64, true, 0, true}, 5);
  Problem bidirectional = causal;
  bidirectional.options.causal = false;
  const Result a = run_kernel(causal);
  const Result b = run_kernel(bidirectional);
  const int64_t T = 300, D = 64;
  for (int64_t bh = 0; bh < 4; ++bh) {
    const int64_t t = bh * T + T - 1;
    EXPECT_NEAR(a.lse[t], b.lse[t], 1e-6f * std::abs(a.lse[t]));
    for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(a.out[t * D + d], b.out[t * D + d], 1e-6f) << "bh " << bh;
  }
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_bit_identical(const Result& a, const Result& b) {
  EXPECT_TRUE(bit_identical(a.out, b.out));
  EXPECT_TRUE(bit_identical(a.lse, b.lse));
  EXPECT_TRUE(bit_identical(a.dq, b.dq));
  EXPECT_TRUE(bit_identical(a.dk, b.dk));
  EXPECT_TRUE(bit_identical(a.dv, b.dv));
}

TEST(SoftmaxKernel, DeterministicForAnyThreadCount) {
  const Problem p = make_problem(Case{"det", 1, 3, 700, 64, true, 200, true, Segments::runs}, 9);
  const Result first = run_kernel(p);
  expect_bit_identical(first, run_kernel(p));
  const int threads = omp_get_max_threads();
  for (int n : {1, 3}) {
    SCOPED_TRACE(n);
    omp_set_num_threads(n);
    expect_bit_identical(first, run_kernel(p));
  }
  omp_set_num_threads(threads);
}

TEST(SoftmaxKernel, NullGradientsAreSkipped) {
  const Problem p = make_problem(Case{"null", 2, 1, 130, 32, false, 40}, 11);
  const Result all = run_kernel(p);
  const auto n = static_cast<size_t>(p.size());
  std::vector<float> dq(n, 7.f), dk(n, 7.f), dv(n, 7.f);
  const auto backward = [&](const SoftmaxAttentionGradients& grads) {
    cpu::softmax_attention_backward(p.shape, p.options, p.inputs(), all.out.data(), all.lse.data(), p.dout.data(),
                                    grads);
  };
  backward({dq.data(), nullptr, nullptr});
  backward({nullptr, dk.data(), nullptr});
  backward({nullptr, nullptr, dv.data()});
  EXPECT_TRUE(bit_identical(dq, all.dq));
  EXPECT_TRUE(bit_identical(dk, all.dk));
  EXPECT_TRUE(bit_identical(dv, all.dv));
  backward({});  // nothing requested: must not touch anything or crash
}

TEST(SoftmaxKernel, ForwardWithoutLse) {
  const Problem p = make_problem(Case{"nolse", 1, 1, 70, 16, true}, 3);
  const Result all = run_kernel(p);
  std::vector<float> out(static_cast<size_t>(p.size()));
  cpu::softmax_attention_forward(p.shape, p.options, p.inputs(), out.data(), nullptr);
  EXPECT_TRUE(bit_identical(out, all.out));
}

// ---------------------------------------------------------------------------------------------------------
// Input validation.

void expect_error(const std::function<void()>& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "no race::Error thrown; expected one mentioning \"" << fragment << "\"";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(SoftmaxKernel, RejectsBadInput) {
  const Problem p = make_problem(Case{"bad", 1, 1, 8, 16, true}, 1);
  std::vector<float> out(static_cast<size_t>(p.size())), lse(static_cast<size_t>(p.queries()));
  // Runs the forward on p with the shape and options edited by `change`.
  const auto expect_forward_error = [&](auto change, const std::string& fragment) {
    SCOPED_TRACE(fragment);
    SoftmaxAttentionShape shape = p.shape;
    SoftmaxAttentionOptions options = p.options;
    change(shape, options);
    expect_error([&] { cpu::softmax_attention_forward(shape, options, p.inputs(), out.data(), nullptr); }, fragment);
  };
  using Shape = SoftmaxAttentionShape;
  using Options = SoftmaxAttentionOptions;
  expect_forward_error([](Shape& s, Options&) { s.head_dim = 0; }, "head_dim must be positive, got 0");
  expect_forward_error([](Shape& s, Options&) { s.batch = -2; }, "batch must be positive, got -2");
  expect_forward_error([](Shape& s, Options&) { s.heads = 0; }, "heads must be positive, got 0");
  expect_forward_error([](Shape& s, Options&) { s.seq_len = 0; }, "seq_len must be positive, got 0");
  expect_forward_error([](Shape&, Options& o) { o.window = -1; }, "window must be >= 0 (0 = full attention), got -1");
  expect_forward_error([](Shape&, Options& o) { o.scale = -1.f; }, "scale must be finite and >= 0");
  expect_forward_error([](Shape&, Options& o) { o.scale = std::numeric_limits<float>::quiet_NaN(); }, "got nan");
  expect_forward_error(
      [](Shape& s, Options&) {
        s.seq_len = int64_t{1} << 40;
        s.head_dim = int64_t{1} << 30;
      },
      "overflows");

  SoftmaxAttentionInputs no_k = p.inputs();
  no_k.k = nullptr;
  expect_error([&] { cpu::softmax_attention_forward(p.shape, p.options, no_k, out.data(), nullptr); }, "k is null");
  expect_error([&] { cpu::softmax_attention_forward(p.shape, p.options, p.inputs(), nullptr, nullptr); },
               "out is null");

  const SoftmaxAttentionGradients grads{out.data(), nullptr, nullptr};
  expect_error([&] { cpu::softmax_attention_backward(p.shape, p.options, p.inputs(), out.data(), nullptr,
                                                     p.dout.data(), grads); },
               "lse is null");
  expect_error([&] { cpu::softmax_attention_backward(p.shape, p.options, p.inputs(), out.data(), lse.data(),
                                                     nullptr, grads); },
               "dout is null");
}

}  // namespace
