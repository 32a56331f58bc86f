// GPT on the CPU backend: the hand-written backward against central finite differences of the loss (every
// parameter tensor, RACE and softmax layers, RoPE and learned positions, tied and untied heads, packed
// documents), and the loss on one repeated batch falling near zero under AdamW. With bf16 product operands
// (EmulatedBf16Ops, what CudaOps stores with --precision bf16): training close to fp32's, the weight copy
// following every write, the memory plan, and generation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/cpu_ops.h"
#include "model/gpt.h"
#include "emulated_bf16_ops.h"

namespace {

using race::model::AttentionKind;
using race::model::AttentionSpec;
using race::model::Batch;
using race::model::CpuOps;
using race::model::Gpt;
using race::model::ModelSpec;
using race::model::Positions;
using race::test::EmulatedBf16Ops;

constexpr int64_t kBatch = 2, kSeq = 9;

struct HostBatch {
  std::vector<int32_t> tokens, targets, segments;
  std::vector<uint8_t> key_mask;  // (B, T): the last two positions of each row are padding
  std::vector<int32_t> labels;    // (B) for a classifier
  Batch view(bool packed, bool masked = false) const {
    return {tokens.data(), targets.data(), nullptr, packed ? segments.data() : nullptr,
            masked ? key_mask.data() : nullptr, labels.empty() ? nullptr : labels.data()};
  }
};

HostBatch random_batch(int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  HostBatch b;
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng() % vocab));
    b.targets.push_back(i % 5 == 3 ? -1 : static_cast<int32_t>(rng() % vocab));  // some positions unscored
    b.segments.push_back(static_cast<int32_t>((i % kSeq) < 4 ? 0 : 1));          // two documents per row
    b.key_mask.push_back(static_cast<uint8_t>((i % kSeq) < kSeq - 2 ? 1 : 0));
  }
  // Rows start with different tokens, so no two positions share a context but want different targets
  // (which would put a floor under the loss of the repeated-batch test).
  for (int64_t row = 0; row < kBatch; ++row) b.tokens[static_cast<size_t>(row * kSeq)] = static_cast<int32_t>(row);
  return b;
}

ModelSpec hybrid_spec(bool variant) {
  ModelSpec s;
  s.vocab_size = 13;
  s.max_seq_len = 16;
  s.d_model = 16;
  s.heads = 2;
  s.mlp_hidden = 24;
  s.seed = 3;
  s.bias = !variant;
  s.tie_embeddings = !variant;
  s.positions = variant ? Positions::learned : Positions::rope;
  AttentionSpec race;
  race.kind = AttentionKind::race;
  race.tables = 2;
  race.bits = 2;
  race.learned_beta = true;
  race.beta = 0.7f;
  race.planes_per_head = variant;
  race.estimator = variant ? race::kernels::RaceEstimator::ratio : race::kernels::RaceEstimator::bucket;
  AttentionSpec softmax;
  softmax.kind = AttentionKind::softmax;
  softmax.window = variant ? 0 : 4;
  s.layers = {race, softmax};
  return s;
}

std::vector<float> host_copy(race::model::Ops& ops, const float* device, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  ops.copy_to_host(out.data(), device, n);
  return out;
}

void check_gradients(bool variant, bool encoder = false, int64_t classes = 0, float dropout = 0.f) {
  CpuOps ops;
  ModelSpec spec = hybrid_spec(variant);
  spec.dropout = dropout;
  spec.causal = !encoder;
  spec.num_classes = classes;
  spec.cls_pooling = variant;
  Gpt model(ops, spec, kBatch, kSeq);
  model.initialize();
  // Larger weights than GPT-2's 0.02 so every path carries a gradient well above fp32 noise.
  std::vector<float> params = host_copy(ops, model.parameters(), model.parameter_count());
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const auto& p : model.params())
    if (!p.name.ends_with("log_beta") && !p.name.ends_with("ln1.weight") && !p.name.ends_with("ln2.weight") &&
        p.name != "lnf.weight")
      for (int64_t i = 0; i < p.size; ++i) params[static_cast<size_t>(p.offset + i)] = static_cast<float>(0.3 * normal(rng));
  ops.copy_from_host(model.parameters(), params.data(), model.parameter_count());

  HostBatch batch = random_batch(13, 5);
  batch.labels = {2, 0};
  model.zero_gradients();
  constexpr uint64_t kDropoutSeed = 17;
  model.forward_backward(batch.view(variant, encoder), 1.f, kDropoutSeed);
  const std::vector<float> grads = host_copy(ops, model.gradients(), model.parameter_count());

  for (const auto& p : model.params()) {
    // A random direction within this tensor; the loss is a sum, so its derivative is O(1).
    std::vector<double> direction(static_cast<size_t>(p.size));
    double norm = 0.0;
    for (double& d : direction) {
      d = normal(rng);
      norm += d * d;
    }
    for (double& d : direction) d /= std::sqrt(norm);
    double analytic = 0.0;
    for (int64_t i = 0; i < p.size; ++i) analytic += grads[static_cast<size_t>(p.offset + i)] * direction[static_cast<size_t>(i)];
    const double h = 1e-2;
    auto loss_at = [&](double step) {
      std::vector<float> moved = params;
      for (int64_t i = 0; i < p.size; ++i)
        moved[static_cast<size_t>(p.offset + i)] += static_cast<float>(step * direction[static_cast<size_t>(i)]);
      ops.copy_from_host(model.parameters(), moved.data(), model.parameter_count());
      // With dropout the loss is the one the masks of kDropoutSeed give (forward_loss never drops).
      if (dropout > 0.f) return model.forward_backward(batch.view(variant, encoder), 1.f, kDropoutSeed).sum;
      return model.forward_loss(batch.view(variant, encoder)).sum;
    };
    const double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    ops.copy_from_host(model.parameters(), params.data(), model.parameter_count());
    EXPECT_NEAR(analytic, numeric, 2e-2 * std::fabs(numeric) + 2e-3)
        << (variant ? "variant " : "hybrid ") << p.name << ": analytic " << analytic << " numeric " << numeric;
  }
}

TEST(Gpt, GradientsMatchFiniteDifferencesRopeTiedWindowedSoftmax) { check_gradients(false); }

TEST(Gpt, GradientsMatchFiniteDifferencesLearnedPositionsUntiedRatioPackedDocuments) { check_gradients(true); }

// The bidirectional encoder (BERT) with padded keys: every query sees every real key of its row.
TEST(Gpt, EncoderGradientsMatchFiniteDifferencesWithPadding) {
  check_gradients(false, true);
  check_gradients(true, true);
}

// The classifier: mean pooling over real tokens (and CLS pooling in the variant), linear head.
TEST(Gpt, ClassifierGradientsMatchFiniteDifferences) {
  check_gradients(false, true, 3);
  check_gradients(true, true, 3);
}

TEST(Gpt, GradientsWithDropoutMatchFiniteDifferencesOfTheSameMasks) {
  check_gradients(false, false, 0, 0.3f);
  check_gradients(true, true, 3, 0.3f);
}

// Recomputation trades memory for compute and nothing else: the same gradients, bit for bit.
TEST(Gpt, RecomputationGivesIdenticalGradientsWithLessMemory) {
  for (const float dropout : {0.f, 0.2f}) {
    std::vector<float> grads[2];
    int64_t bytes[2] = {};
    for (const bool recompute : {false, true}) {
      CpuOps ops;
      ModelSpec spec = hybrid_spec(false);
      spec.layers.push_back(spec.layers[0]);  // three layers, so two share the recomputed buffers
      spec.recompute = recompute;
      spec.dropout = dropout;
      Gpt model(ops, spec, kBatch, kSeq);
      model.initialize();
      const HostBatch batch = random_batch(13, 4);
      model.forward_backward(batch.view(false), 1.f, 99);
      grads[recompute] = host_copy(ops, model.gradients(), model.parameter_count());
      bytes[recompute] = model.activation_bytes_per_token();
    }
    EXPECT_EQ(grads[0], grads[1]) << "dropout " << dropout;
    EXPECT_LT(bytes[1], bytes[0]);
  }
}

// The memory plan a trainer checks before building a model is what the constructor then allocates, byte for
// byte, for every kind of layer, head and position table, with and without recomputation, at shapes where
// the logits block is capped by the rows and where it is not.
TEST(Gpt, MemoryPlanEqualsWhatTheConstructorAllocates) {
  for (const bool variant : {false, true})
    for (const bool recompute : {false, true})
      for (const int64_t classes : {int64_t{0}, int64_t{3}})
        for (const int64_t vocab : {int64_t{13}, int64_t{300000}})
          for (const int64_t block_bytes : {int64_t{4} << 20, int64_t{1}, int64_t{1} << 30}) {
            ModelSpec spec = hybrid_spec(variant);
            spec.logits_block_bytes = block_bytes;
            spec.layers.push_back(spec.layers[0]);
            spec.recompute = recompute;
            spec.num_classes = classes;
            spec.causal = classes == 0;
            spec.vocab_size = vocab;
            CpuOps fp32_ops;
            EmulatedBf16Ops bf16_ops;
            for (race::model::Ops* ops : {static_cast<race::model::Ops*>(&fp32_ops),
                                          static_cast<race::model::Ops*>(&bf16_ops)}) {
              const Gpt model(*ops, spec, kBatch, kSeq);
              const race::model::MemoryPlan plan =
                  race::model::plan_memory(spec, kBatch, kSeq, ops->operand_type());
              EXPECT_EQ(plan.bytes(kBatch, kSeq), ops->allocated_bytes())
                  << "variant " << variant << " recompute " << recompute << " classes " << classes << " vocab "
                  << vocab << " block " << block_bytes << " operands "
                  << race::model::element_type_name(ops->operand_type());
              EXPECT_EQ(plan.parameters, model.parameter_count());
              EXPECT_EQ(plan.buffers, model.buffer_count());
            }
          }
  // bf16 operands halve what only products and attention read: 7C + M of each layer's activations (ln1, q,
  // k, v, att, att_rows, ln2; gelu), and the final LayerNorm's output, at C = 16, M = 24 per token; and
  // the backward's dq, dk, dv and heads' gradient (4C) of the scratch.
  const ModelSpec spec = hybrid_spec(false);
  const auto fp32_plan = race::model::plan_memory(spec, kBatch, kSeq, race::model::ElementType::fp32);
  const auto bf16_plan = race::model::plan_memory(spec, kBatch, kSeq, race::model::ElementType::bf16);
  EXPECT_EQ(fp32_plan.activation_bytes_per_token - bf16_plan.activation_bytes_per_token,
            2 * (2 * (7 * 16 + 24) + 16));
  EXPECT_EQ(fp32_plan.scratch_bytes_per_token - bf16_plan.scratch_bytes_per_token, 2 * 4 * 16);
  // The copy holds the product weights (four matrices per layer, the tied head's wte), nothing else.
  EXPECT_EQ(bf16_plan.weight_operand_bytes, 2 * (2 * (3 * 16 * 16 + 16 * 16 + 2 * 24 * 16) + 13 * 16));
  EXPECT_EQ(fp32_plan.weight_operand_bytes, 0);
  EXPECT_THROW(race::model::plan_memory(hybrid_spec(true), kBatch, 17, race::model::ElementType::fp32),
               race::Error);  // past max_seq_len
}

// The logits block size (a device's preference) changes only the order of the head's sums: one row at a
// time and the whole batch at once give the same loss and gradients within fp32 rounding.
TEST(Gpt, LogitsBlockSizeDoesNotChangeTheResult) {
  std::vector<float> grads[2];
  double loss[2] = {};
  for (const int block : {0, 1}) {
    CpuOps ops;
    ModelSpec spec = hybrid_spec(false);
    spec.logits_block_bytes = block == 0 ? 1 : int64_t{1} << 30;
    Gpt model(ops, spec, kBatch, kSeq);
    model.initialize();
    loss[block] = model.forward_backward(random_batch(13, 5).view(false), 1.f).sum;
    grads[block] = host_copy(ops, model.gradients(), model.parameter_count());
  }
  EXPECT_NEAR(loss[0], loss[1], 1e-5 * std::abs(loss[1]));
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    diff += std::pow(static_cast<double>(grads[0][i]) - grads[1][i], 2);
    norm += std::pow(static_cast<double>(grads[1][i]), 2);
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

// The backward's ready callbacks (data-parallel overlap): disjoint ranges in decreasing offset order that
// cover every parameter, each holding its final gradient when reported. Checked with gradients already
// accumulated from an earlier micro-batch, tied and untied heads, and a classifier head.
TEST(Gpt, GradientRangesAreReportedOnceAndFinal) {
  for (const int variant : {0, 1, 2}) {
    CpuOps ops;
    ModelSpec spec = hybrid_spec(variant == 1);
    if (variant == 2) spec.causal = false, spec.num_classes = 3;
    Gpt model(ops, spec, kBatch, kSeq);
    model.initialize();
    HostBatch batch = random_batch(13, 5);
    batch.labels = {1, 2};
    model.forward_backward(batch.view(false), 0.5f, 7);
    struct Range {
      int64_t offset, count;
      std::vector<float> values;  // gradients() over the range when it was reported
    };
    std::vector<Range> ranges;
    model.forward_backward(batch.view(false), 0.5f, 8, [&](int64_t offset, int64_t count) {
      ranges.push_back({offset, count, host_copy(ops, model.gradients() + offset, count)});
    });
    const std::vector<float> final_grads = host_copy(ops, model.gradients(), model.parameter_count());
    int64_t end = model.parameter_count();
    for (const Range& r : ranges) {
      EXPECT_EQ(r.offset + r.count, end) << "variant " << variant << ": ranges must tile downwards";
      EXPECT_GT(r.count, 0);
      end = r.offset;
      EXPECT_EQ(r.values,
                std::vector<float>(final_grads.begin() + r.offset, final_grads.begin() + r.offset + r.count))
          << "variant " << variant << ": range at " << r.offset << " changed after it was reported";
    }
    EXPECT_EQ(end, 0) << "variant " << variant;
    EXPECT_EQ(ranges.size(), spec.layers.size() + 2);
  }
}

TEST(Gpt, LossOnOneRepeatedBatchFallsNearZero) {
  CpuOps ops;
  Gpt model(ops, hybrid_spec(false), kBatch, kSeq);
  model.initialize();
  const HostBatch batch = random_batch(13, 9);
  const int64_t n = model.parameter_count();
  float* m = ops.allocate(n);
  float* v = ops.allocate(n);
  double first = 0.0, last = 0.0;
  for (int64_t step = 1; step <= 300; ++step) {
    model.zero_gradients();
    const auto loss = model.forward_backward(batch.view(false), 1.f / 15.f);  // 15 scored positions
    if (step == 1) first = loss.mean();
    last = loss.mean();
    race::model::AdamWStep adam;
    adam.lr = 1e-2f;
    adam.step = step;
    ops.adamw(model.parameters(), model.gradients(), m, v, {{0, n, false}}, adam);
  }
  EXPECT_GT(first, 2.0);  // about log(13) = 2.56 at initialisation
  EXPECT_LT(last, 0.02) << "first " << first;
}

// The same initial parameters and batches trained for ten AdamW steps with fp32 and with bf16 operands:
// the bf16 run's losses stay within 2% of fp32's and its first gradients within bf16 tolerance, every
// product of a language model multiplies bf16 operands, and only the classifier's small head stays fp32.
TEST(Gpt, Bf16OperandsTrainLikeFp32) {
  for (const int64_t classes : {int64_t{0}, int64_t{3}}) {
    CpuOps fp32_ops;
    EmulatedBf16Ops bf16_ops;
    ModelSpec spec = hybrid_spec(false);
    spec.num_classes = classes;
    spec.causal = classes == 0;
    Gpt fp32_model(fp32_ops, spec, kBatch, kSeq), bf16_model(bf16_ops, spec, kBatch, kSeq);
    fp32_model.initialize(), bf16_model.initialize();
    HostBatch batch = random_batch(13, 5);
    batch.labels = {1, 2};
    const int64_t n = fp32_model.parameter_count();
    float *fp32_m = fp32_ops.allocate(n), *fp32_v = fp32_ops.allocate(n);
    float *bf16_m = bf16_ops.allocate(n), *bf16_v = bf16_ops.allocate(n);
    double first_loss = 0.0, last_loss[2] = {};
    for (int64_t step = 1; step <= 10; ++step) {
      fp32_model.zero_gradients(), bf16_model.zero_gradients();
      const double fp32_loss = fp32_model.forward_backward(batch.view(false, classes > 0), 0.1f).mean();
      const double bf16_loss = bf16_model.forward_backward(batch.view(false, classes > 0), 0.1f).mean();
      EXPECT_NEAR(bf16_loss, fp32_loss, 0.02 * fp32_loss) << "classes " << classes << " step " << step;
      if (step == 1) {
        first_loss = fp32_loss;
        const std::vector<float> g32 = host_copy(fp32_ops, fp32_model.gradients(), n);
        const std::vector<float> g16 = host_copy(bf16_ops, bf16_model.gradients(), n);
        double diff = 0.0, norm = 0.0;
        for (size_t i = 0; i < g32.size(); ++i) {
          diff += (double(g16[i]) - g32[i]) * (double(g16[i]) - g32[i]);
          norm += double(g32[i]) * g32[i];
        }
        EXPECT_LT(std::sqrt(diff / norm), 2e-2) << "classes " << classes;
        EXPECT_GT(std::sqrt(diff / norm), 0.0) << "bf16 rounding must show in the gradients";
      }
      last_loss[0] = fp32_loss, last_loss[1] = bf16_loss;
      race::model::AdamWStep adam;
      adam.lr = 1e-2f;
      adam.step = step;
      fp32_ops.adamw(fp32_model.parameters(), fp32_model.gradients(), fp32_m, fp32_v, {{0, n, false}}, adam);
      bf16_ops.adamw(bf16_model.parameters(), bf16_model.gradients(), bf16_m, bf16_v, {{0, n, false}}, adam);
    }
    EXPECT_LT(last_loss[1], first_loss) << "classes " << classes;  // the updated weights reached the products
    EXPECT_GT(bf16_ops.bf16_products, 0);
    // A classifier's head: one product forward, one backward, per step; a language model has none in fp32.
    EXPECT_EQ(bf16_ops.fp32_products, classes > 0 ? 20 : 0) << "classes " << classes;
  }
}

// With bf16 operands too, recomputation changes nothing, bit for bit, with and without dropout (the operand
// views over the backward's scratch hold what each product needs when it runs), and the gradients stay
// within bf16 tolerance of fp32's.
TEST(Gpt, Bf16RecomputationAndDropoutGiveTheSameGradients) {
  for (const float dropout : {0.f, 0.2f})
    for (const bool variant : {false, true}) {
      std::vector<float> grads[3];  // bf16, bf16 recomputed, fp32 recomputed
      for (int run = 0; run < 3; ++run) {
        CpuOps fp32_ops;
        EmulatedBf16Ops bf16_ops;
        race::model::Ops& ops = run < 2 ? static_cast<race::model::Ops&>(bf16_ops) : fp32_ops;
        ModelSpec spec = hybrid_spec(variant);
        spec.layers.push_back(spec.layers[0]);  // three layers, so two share the recomputed buffers
        spec.recompute = run >= 1;
        spec.dropout = dropout;
        Gpt model(ops, spec, kBatch, kSeq);
        model.initialize();
        const HostBatch batch = random_batch(13, 4);
        model.forward_backward(batch.view(variant), 1.f, 99);
        grads[run] = host_copy(ops, model.gradients(), model.parameter_count());
      }
      EXPECT_EQ(grads[0], grads[1]) << "dropout " << dropout << " variant " << variant;
      double diff = 0.0, norm = 0.0;
      for (size_t i = 0; i < grads[2].size(); ++i) {
        diff += (double(grads[1][i]) - grads[2][i]) * (double(grads[1][i]) - grads[2][i]);
        norm += double(grads[2][i]) * grads[2][i];
      }
      EXPECT_LT(std::sqrt(diff / norm), 2e-2) << "dropout " << dropout << " variant " << variant;
    }
}

// The operand copies of the product weights start on 16-byte boundaries and do not overlap, whatever the
// parameter arena's offsets (an odd vocabulary and hidden size put them anywhere); an untied head copies
// lm_head.weight, a classifier none of its head.
TEST(Gpt, WeightCopiesAreAlignedAndCoverTheProductWeights) {
  for (const int64_t classes : {int64_t{0}, int64_t{3}}) {
    ModelSpec spec = hybrid_spec(true);
    spec.vocab_size = 13;
    spec.mlp_hidden = 23;
    spec.num_classes = classes;
    spec.causal = classes == 0;
    CpuOps ops;
    const Gpt model(ops, spec, kBatch, kSeq);
    int64_t total = 0;
    const auto copies = Gpt::weight_copies(spec, model.params(), &total);
    std::vector<std::string> names;
    int64_t end = 0;
    for (const auto& c : copies) {
      EXPECT_EQ(c.copy_offset % 8, 0);
      EXPECT_GE(c.copy_offset, end);
      end = c.copy_offset + c.count;
      for (const auto& p : model.params())
        if (p.offset == c.param_offset) {
          names.push_back(p.name);
          EXPECT_EQ(p.size, c.count);
        }
    }
    EXPECT_EQ(total, end);
    ASSERT_EQ(names.size(), classes > 0 ? 8u : 9u);
    EXPECT_EQ(names.back(), classes > 0 ? "layers.1.mlp.proj.weight" : "lm_head.weight");
    EXPECT_EQ(names.front(), "layers.0.attn.qkv.weight");
  }
}

// Gpt::adamw with one range per tensor writes the product weights' copies in the update's pass: the model
// trains bit for bit as one whose copies are rounded again before each forward pass, and from the second
// step on rounds no weight outside the update (only the residual gradient's casts remain).
TEST(Gpt, Bf16WeightCopiesWrittenByAdamWEqualTheRoundedWeights) {
  const ModelSpec spec = hybrid_spec(false);
  EmulatedBf16Ops fused_ops, rounded_ops;
  Gpt fused(fused_ops, spec, kBatch, kSeq), rounded(rounded_ops, spec, kBatch, kSeq);
  fused.initialize(), rounded.initialize();
  const int64_t n = fused.parameter_count();
  const auto ranges = race::model::adamw_ranges(fused.params(), [](const auto& p) { return p.weight_decay; });
  float *fused_m = fused_ops.allocate(n), *fused_v = fused_ops.allocate(n);
  float *rounded_m = rounded_ops.allocate(n), *rounded_v = rounded_ops.allocate(n);
  const HostBatch batch = random_batch(13, 3);
  int64_t copied = 0;
  Gpt::weight_copies(spec, fused.params(), &copied);
  int64_t fused_rounded[2] = {}, plain_rounded[2] = {};
  for (int64_t step = 1; step <= 3; ++step) {
    const int64_t fused_before = fused_ops.to_operands_elements, plain_before = rounded_ops.to_operands_elements;
    fused.zero_gradients(), rounded.zero_gradients();
    const double a = fused.forward_backward(batch.view(false), 0.1f).sum;
    const double b = rounded.forward_backward(batch.view(false), 0.1f).sum;
    EXPECT_EQ(a, b) << "step " << step;
    race::model::AdamWStep adam;
    adam.lr = 1e-2f, adam.weight_decay = 0.1f, adam.step = step;
    fused.adamw(fused_m, fused_v, ranges, adam);
    rounded_ops.adamw(rounded.parameters(), rounded.gradients(), rounded_m, rounded_v, ranges, adam);
    if (step > 1) {
      fused_rounded[step - 2] = fused_ops.to_operands_elements - fused_before;
      plain_rounded[step - 2] = rounded_ops.to_operands_elements - plain_before;
    }
  }
  EXPECT_EQ(fused.forward_logits(batch.view(false)), rounded.forward_logits(batch.view(false)));
  EXPECT_EQ(plain_rounded[0] - fused_rounded[0], copied);
  EXPECT_EQ(plain_rounded[1] - fused_rounded[1], copied);
}

// Writing parameters through parameters() (the optimizer, a checkpoint) reaches the next forward pass's bf16
// weight copy: the logits are those of a model built with the new parameters from the start.
TEST(Gpt, Bf16WeightCopyFollowsEveryWriteThroughParameters) {
  EmulatedBf16Ops ops;
  const ModelSpec spec = hybrid_spec(false);
  Gpt model(ops, spec, kBatch, kSeq);
  model.initialize();
  const HostBatch batch = random_batch(13, 7);
  const std::vector<float> before = model.forward_logits(batch.view(false));
  std::vector<float> params = host_copy(ops, model.parameters(), model.parameter_count());
  for (float& p : params) p *= 1.5f;
  ops.copy_from_host(model.parameters(), params.data(), model.parameter_count());
  const std::vector<float> after = model.forward_logits(batch.view(false));

  EmulatedBf16Ops fresh_ops;
  Gpt fresh(fresh_ops, spec, kBatch, kSeq);
  fresh.initialize();
  fresh_ops.copy_from_host(fresh.parameters(), params.data(), fresh.parameter_count());
  EXPECT_EQ(after, fresh.forward_logits(batch.view(false)));
  EXPECT_NE(after, before);
}

// Token-by-token generation (RACE recurrent state, softmax caches incl. a window shorter than the
// sequence) gives the logits a full forward pass gives at every position; with bf16 operands too, within
// bf16 rounding (the two paths' fp32 values differ in the last bits, and may round to neighbouring bf16).
TEST(Gpt, DecodingTokenByTokenMatchesTheFullForwardPass) {
  for (const int run : {0, 1, 2}) {
    const bool variant = run == 1, bf16 = run == 2;
    CpuOps fp32_ops;
    EmulatedBf16Ops bf16_ops;
    race::model::Ops& ops = bf16 ? static_cast<race::model::Ops&>(bf16_ops) : fp32_ops;
    ModelSpec spec = hybrid_spec(variant);
    Gpt model(ops, spec, 1, kSeq);
    model.initialize();
    const HostBatch batch = random_batch(13, 21);
    const Batch view{batch.tokens.data(), batch.targets.data(), nullptr, nullptr};
    const std::vector<float> full = model.forward_logits(view);
    model.start_decoding(kSeq);
    double max_error = 0.0, max_value = 0.0;
    for (int64_t t = 0; t < kSeq; ++t) {
      const float* logits = model.decode_step(batch.tokens[static_cast<size_t>(t)]);
      std::vector<float> host(13);
      ops.copy_to_host(host.data(), logits, 13);
      for (int64_t j = 0; j < 13; ++j) {
        max_error = std::max(max_error, double(std::fabs(host[j] - full[static_cast<size_t>(t * 13 + j)])));
        max_value = std::max(max_value, double(std::fabs(full[static_cast<size_t>(t * 13 + j)])));
      }
    }
    EXPECT_LT(max_error, (bf16 ? 2e-2 : 1e-4) * std::max(1.0, max_value)) << "run " << run;
    EXPECT_THROW(model.decode_step(0), race::Error);  // past the kSeq tokens it was started for
  }
}

TEST(Gpt, BadSpecsAreRejectedByName) {
  CpuOps ops;
  ModelSpec s = hybrid_spec(false);
  s.heads = 3;
  EXPECT_THROW(Gpt(ops, s, 1, 4), race::Error);
  s = hybrid_spec(false);
  s.layers.clear();
  EXPECT_THROW(Gpt(ops, s, 1, 4), race::Error);
  s = hybrid_spec(true);
  EXPECT_THROW(Gpt(ops, s, 1, 17), race::Error);  // learned positions: 17 > max_seq_len 16
  s = hybrid_spec(false);
  s.num_classes = 3;  // a causal classifier would pool over prefixes
  EXPECT_THROW(Gpt(ops, s, 1, 4), race::Error);
}

}  // namespace
