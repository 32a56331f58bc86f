// Timing of one attention layer for race-bench attention: inputs, kernel calls, medians, and the byte and
// cost models that let the sweep stop before a size overruns its memory or time budget.
#include "layer_bench.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <memory>

#include "core/error.h"
#include "fill.h"
#ifdef RACE_HAVE_CUDA
#include "cuda_layer_bench.h"
#endif
#include "kernels/cpu/race_attention_cpu.h"
#include "kernels/cpu/softmax_attention_cpu.h"

namespace race::bench {

namespace kernels = race::kernels;

nlohmann::ordered_json to_json(const LayerConfig& c) {
  return {{"impl", c.impl},         {"device", c.device}, {"dtype", c.dtype},
          {"causal", c.causal},     {"batch", c.batch},   {"heads", c.heads},
          {"head_dim", c.head_dim}, {"tables", c.tables}, {"bits", c.bits},     {"estimator", c.estimator},
          {"beta", c.beta},         {"eps", c.eps},       {"window", c.window}, {"threads", c.threads},
          {"repeats", c.repeats},   {"seed", c.seed},     {"in_place", c.in_place}};
}

LayerConfig layer_config_from_json(const nlohmann::json& json) {
  try {
    LayerConfig c;
    json.at("impl").get_to(c.impl);
    json.at("device").get_to(c.device);
    json.at("dtype").get_to(c.dtype);
    json.at("causal").get_to(c.causal);
    json.at("batch").get_to(c.batch);
    json.at("heads").get_to(c.heads);
    json.at("head_dim").get_to(c.head_dim);
    json.at("tables").get_to(c.tables);
    json.at("bits").get_to(c.bits);
    json.at("estimator").get_to(c.estimator);
    json.at("beta").get_to(c.beta);
    json.at("eps").get_to(c.eps);
    json.at("window").get_to(c.window);
    json.at("threads").get_to(c.threads);
    json.at("repeats").get_to(c.repeats);
    json.at("seed").get_to(c.seed);
    json.at("in_place").get_to(c.in_place);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("layer configuration {}: {}", json.dump(), e.what());
  }
}

kernels::RaceAttentionShape race_shape(const LayerConfig& c, std::int64_t seq_len) {
  kernels::RaceAttentionShape shape;
  shape.batch = c.batch;
  shape.heads = c.heads;
  shape.seq_len = seq_len;
  shape.head_dim = c.head_dim;
  shape.tables = c.tables;
  shape.bits = c.bits;
  return shape;
}

kernels::RaceAttentionOptions race_options(const LayerConfig& c) {
  kernels::RaceAttentionOptions options;
  options.causal = c.causal;
  options.estimator = c.estimator == "ratio" ? kernels::RaceEstimator::ratio : kernels::RaceEstimator::bucket;
  options.eps = static_cast<float>(c.eps);
  return options;
}

namespace {

// Outputs and scratch are zero-filled before timing: a trainer reuses arenas whose pages are mapped after
// the first step, so page faults are not part of a layer's steady-state time.
using Buffer = std::unique_ptr<float[]>;

Buffer buffer(std::int64_t n) { return std::make_unique<float[]>(static_cast<std::size_t>(n)); }

Buffer normal_buffer(std::int64_t n, std::uint64_t stream, float sigma) {
  Buffer b = buffer(n);
  fill_normal(b.get(), n, stream, sigma);
  return b;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Times `forward` alone and `forward` then `backward`, `repeats` times each.
template <typename Forward, typename Backward>
LayerTiming time_passes(int repeats, Forward&& forward, Backward&& backward) {
  LayerTiming timing;
  for (int r = 0; r < repeats; ++r) {
    auto start = std::chrono::steady_clock::now();
    forward();
    timing.forward_seconds.push_back(seconds_since(start));
    start = std::chrono::steady_clock::now();
    forward();
    backward();
    timing.forward_backward_seconds.push_back(seconds_since(start));
  }
  return timing;
}

}  // namespace

void validate(const LayerConfig& c) {
  if (c.impl != "race" && c.impl != "softmax") throw UsageError(fmt::format("unknown impl \"{}\"", c.impl));
  if (c.device != "cpu" && c.device != "cuda") throw UsageError(fmt::format("unknown device \"{}\"", c.device));
  if (c.dtype != "fp32" && c.dtype != "bf16") throw UsageError(fmt::format("unknown dtype \"{}\"", c.dtype));
  if (!c.on_cuda() && c.dtype != "fp32") throw UsageError("--dtype bf16 needs --device cuda (the CPU kernels are fp32)");
  if (c.in_place && !(c.on_cuda() && c.is_race()))
    throw UsageError("--in-place needs --device cuda and --impl race (the CUDA RACE kernels allow gradients over "
                     "their inputs)");
  if (c.estimator != "bucket" && c.estimator != "ratio")
    throw UsageError(fmt::format("unknown estimator \"{}\"", c.estimator));
  if (c.is_race()) {
    // The kernels take fp32: a value that does not survive the conversion is the user's, so name it.
    const float beta = static_cast<float>(c.beta), eps = static_cast<float>(c.eps);
    if (!(beta > 0.f) || !std::isfinite(beta))
      throw UsageError(fmt::format("--beta {}: expected a positive number that fits in fp32", c.beta));
    if (!(eps >= 1e-30f) || !std::isfinite(eps))
      throw UsageError(fmt::format("--eps {}: expected a number in [1e-30, 3.4e38] (fp32, phi / eps finite)", c.eps));
    try {
      kernels::validate(race_shape(c, 1), race_options(c));
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
  }
}

std::int64_t io_bytes(const LayerConfig& c, std::int64_t seq_len) {
  std::int64_t bytes = (c.in_place ? 4 : 8) * c.element_bytes();
  for (const std::int64_t factor : {c.batch, c.heads, seq_len, c.head_dim})
    if (__builtin_mul_overflow(bytes, factor, &bytes))
      throw UsageError(fmt::format("B={} H={} T={} D={}: the layer's size overflows 64 bits", c.batch, c.heads,
                                   seq_len, c.head_dim));
  return bytes;
}

std::int64_t min_traffic_bytes(const LayerConfig& c, std::int64_t seq_len, bool with_backward) {
  return (with_backward ? 11 : 4) * c.element_bytes() * c.batch * c.heads * seq_len * c.head_dim;
}

double relative_cost(const LayerConfig& c, std::int64_t seq_len) {
  const double t = static_cast<double>(seq_len);
  if (c.is_race()) return t;
  if (c.window == 0) return t * t;
  const double keys = c.causal ? static_cast<double>(c.window) : 2.0 * static_cast<double>(c.window) - 1.0;
  return t * std::min(t, keys);
}

LayerTiming time_layer(const LayerConfig& c, std::int64_t seq_len) {
#ifdef RACE_HAVE_CUDA
  if (c.on_cuda()) return time_layer_cuda(c, seq_len);
#endif
  RACE_CHECK(!c.on_cuda(), "race-bench: --device cuda reached a build without CUDA");
  omp_set_num_threads(c.threads);
  const std::int64_t n = c.batch * c.heads * seq_len * c.head_dim;
  // Distinct streams per tensor, so that e.g. q and k are not the same numbers.
  const Buffer q = normal_buffer(n, c.seed * 8 + 0, 0.5f);
  const Buffer k = normal_buffer(n, c.seed * 8 + 1, 0.5f);
  const Buffer v = normal_buffer(n, c.seed * 8 + 2, 1.f);
  const Buffer dout = normal_buffer(n, c.seed * 8 + 3, 1.f);
  const Buffer out = buffer(n), dq = buffer(n), dk = buffer(n), dv = buffer(n);

  if (c.is_race()) {
    const auto shape = race_shape(c, seq_len);
    const auto options = race_options(c);
    const std::int64_t plane_count = int64_t{c.tables} * c.bits * c.head_dim;
    const Buffer planes = normal_buffer(plane_count, c.seed * 8 + 4, 1.f);
    const std::vector<float> beta(static_cast<std::size_t>(c.heads), static_cast<float>(c.beta));
    const kernels::RaceAttentionInputs inputs{q.get(), k.get(), v.get(), planes.get(), beta.data(), nullptr, nullptr};
    // A fixed temperature has no gradient to compute: dbeta stays null, as in training with fixed beta.
    const kernels::RaceAttentionGradients grads{dq.get(), dk.get(), dv.get(), nullptr};
    // The backward's per-token storage is allocated once, as a trainer's arena would hold it, so the
    // timed calls do not pay for mapping fresh pages; it counts in the peak memory.
    const std::int64_t scratch_bytes = kernels::cpu::race_attention_backward_scratch_bytes(shape, options);
    const Buffer scratch = buffer(scratch_bytes / std::int64_t{sizeof(float)});
    const kernels::cpu::Scratch backward_scratch{scratch.get(), scratch_bytes};
    return time_passes(
        c.repeats, [&] { kernels::cpu::race_attention_forward(shape, options, inputs, out.get()); },
        [&] {
          kernels::cpu::race_attention_backward(shape, options, inputs, dout.get(), grads, backward_scratch);
        });
  }
  const kernels::SoftmaxAttentionShape shape{c.batch, c.heads, seq_len, c.head_dim};
  kernels::SoftmaxAttentionOptions options;
  options.causal = c.causal;
  options.window = c.window;
  const kernels::SoftmaxAttentionInputs inputs{q.get(), k.get(), v.get(), nullptr, nullptr};
  const kernels::SoftmaxAttentionGradients grads{dq.get(), dk.get(), dv.get()};
  const Buffer lse = buffer(c.batch * c.heads * seq_len);
  return time_passes(
      c.repeats, [&] { kernels::cpu::softmax_attention_forward(shape, options, inputs, out.get(), lse.get()); },
      [&] {
        kernels::cpu::softmax_attention_backward(shape, options, inputs, out.get(), lse.get(), dout.get(), grads);
      });
}

double median(std::vector<double> values) {
  RACE_CHECK(!values.empty(), "median of no values");
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

}  // namespace race::bench
