// model::ProfiledOps: a model run through it, profiling on, gives the same bits as on the wrapped CpuOps
// (every call forwards its arguments unchanged: training, with a learned temperature, RoPE and a windowed
// softmax layer, and token-by-token decoding), and the totals count each operation's calls and the linear
// layers' FLOPs (2 N in out per product), only while enabled.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "model/gpt.h"
#include "model/profiled_ops.h"
#include "test_support.h"

namespace {

using race::model::CpuOps;
using race::model::Gpt;
using race::model::ModelSpec;
using race::model::ProfiledOps;

ModelSpec small_hybrid() {
  ModelSpec s;
  s.vocab_size = 17;
  s.max_seq_len = 12;
  s.d_model = 16;
  s.heads = 2;
  s.mlp_hidden = 20;
  s.seed = 11;
  race::model::AttentionSpec race_layer, softmax_layer;
  race_layer.kind = race::model::AttentionKind::race;
  race_layer.tables = 2;
  race_layer.bits = 2;
  race_layer.learned_beta = true;
  softmax_layer.kind = race::model::AttentionKind::softmax;
  softmax_layer.window = 3;
  s.layers = {race_layer, softmax_layer};
  return s;
}

const ProfiledOps::OpTotal* find(const ProfiledOps& ops, const std::string& op) {
  for (const auto& t : ops.totals())
    if (t.op == op) return &t;
  return nullptr;
}

TEST(ProfiledOps, AModelThroughItComputesTheSameBitsAsOnTheWrappedOps) {
  const int64_t B = 2, T = 11;
  const ModelSpec spec = small_hybrid();
  std::mt19937_64 rng(5);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<int32_t>(rng() % spec.vocab_size);
    targets[i] = i % 4 == 1 ? -1 : static_cast<int32_t>(rng() % spec.vocab_size);
  }
  const race::model::Batch batch{tokens.data(), targets.data(), nullptr, nullptr};
  CpuOps plain_ops, wrapped_ops;
  ProfiledOps profiled(wrapped_ops);
  profiled.set_enabled(true);
  Gpt plain(plain_ops, spec, B, T), through(profiled, spec, B, T);
  plain.initialize();
  through.initialize();
  const int64_t n = plain.parameter_count();
  for (int step = 0; step < 2; ++step) {
    plain.zero_gradients();
    through.zero_gradients();
    const double want = plain.forward_backward(batch, 0.1f).sum, got = through.forward_backward(batch, 0.1f).sum;
    EXPECT_EQ(got, want) << "step " << step;
    const std::vector<float> want_grads(plain.gradients(), plain.gradients() + n);
    std::vector<float> got_grads(static_cast<size_t>(n));
    profiled.copy_to_host(got_grads.data(), through.gradients(), n);
    EXPECT_TRUE(race::test::bit_equal(got_grads, want_grads)) << "step " << step;
    race::model::AdamWStep adam;
    adam.lr = 1e-2f;
    adam.weight_decay = 0.1f;
    adam.step = step + 1;
    const auto ranges = race::model::adamw_ranges(plain.params(), [](const auto& p) { return p.weight_decay; });
    plain_ops.adamw(plain.parameters(), plain.gradients(), plain_ops.allocate(n), plain_ops.allocate(n), ranges, adam);
    profiled.adamw(through.parameters(), through.gradients(), profiled.allocate(n), profiled.allocate(n), ranges,
                   adam);
  }
  plain.start_decoding(5);
  through.start_decoding(5);
  for (int64_t t = 0; t < 5; ++t) {
    std::vector<float> want(static_cast<size_t>(spec.vocab_size)), got(want.size());
    plain_ops.copy_to_host(want.data(), plain.decode_step(tokens[t]), spec.vocab_size);
    profiled.copy_to_host(got.data(), through.decode_step(tokens[t]), spec.vocab_size);
    EXPECT_TRUE(race::test::bit_equal(got, want)) << "token " << t;
  }
  EXPECT_EQ(profiled.allocated_bytes(), wrapped_ops.allocated_bytes());
  for (const char* op : {"linear_forward", "linear_backward", "residual_layernorm_forward", "race_attention_forward",
                         "race_attention_backward", "softmax_attention_forward", "cross_entropy", "adamw",
                         "race_attention_decode", "softmax_attention_decode"})
    EXPECT_NE(find(profiled, op), nullptr) << op << " was not recorded";
}

TEST(ProfiledOps, TotalsCountCallsAndLinearFlopsOnlyWhileEnabled) {
  CpuOps cpu;
  ProfiledOps profiled(cpu);
  const int64_t rows = 3, in = 4, out = 5;
  float* x = profiled.allocate(rows * in);
  float* w = profiled.allocate(out * in);
  float* y = profiled.allocate(rows * out);
  float* dx = profiled.allocate(rows * in);
  float* dw = profiled.allocate(out * in);
  profiled.linear_forward(y, x, w, nullptr, rows, in, out);
  EXPECT_TRUE(profiled.totals().empty()) << "disabled: nothing is timed";
  profiled.set_enabled(true);
  profiled.linear_forward(y, x, w, nullptr, rows, in, out);
  profiled.linear_forward(y, x, w, nullptr, rows, in, out);
  profiled.linear_backward(nullptr, dw, nullptr, y, x, w, rows, in, out);  // dW only: one product
  profiled.linear_backward(dx, dw, nullptr, y, x, w, rows, in, out);       // dx and dW: two
  profiled.fill(y, 1.f, rows * out);
  ASSERT_EQ(profiled.totals().size(), 3u);
  EXPECT_EQ(profiled.totals()[0].op, "linear_forward");
  EXPECT_EQ(profiled.totals()[0].calls, 2);
  EXPECT_EQ(profiled.totals()[0].flops, 2 * 2.0 * rows * in * out);
  EXPECT_EQ(profiled.totals()[1].op, "linear_backward");
  EXPECT_EQ(profiled.totals()[1].flops, 3 * 2.0 * rows * in * out);
  EXPECT_EQ(profiled.totals()[2].op, "fill");
  EXPECT_EQ(profiled.totals()[2].flops, 0.0);
  for (const auto& t : profiled.totals()) EXPECT_GE(t.seconds, 0.0);
  profiled.clear();
  EXPECT_TRUE(profiled.totals().empty());
}

}  // namespace
