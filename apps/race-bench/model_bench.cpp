// race-bench model: a whole GPT's training steps timed on random tokens (model_bench.h).
#include "model_bench.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "core/error.h"
#include "layer_bench.h"
#include "model/flops.h"
#include "model/profiled_ops.h"
#include "peak.h"
#include "system_info.h"
#include "train/device.h"
#ifdef RACE_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

namespace race::bench {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

// race-train's optimizer defaults (train_schema): the step's cost does not depend on them, but the same
// values keep the update the same work.
constexpr float kLearningRate = 3e-4f, kBeta1 = 0.9f, kBeta2 = 0.95f, kEps = 1e-8f, kWeightDecay = 0.1f;
constexpr double kGradClip = 1.0;
// The share of positions a masked LM scores (race-train's mlm task masks 15%).
constexpr double kMaskedShare = 0.15;

struct Peak {
  std::string name;
  double tflops = 0.0;
  std::string source;
};

#ifdef RACE_HAVE_CUDA
// FP32 fused multiply-add lanes per SM (CUDA C++ Programming Guide, "Arithmetic Instructions", 32-bit
// floating-point add, multiply, multiply-add per clock per SM); 0 for a generation not listed here.
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 7 || (major == 8 && minor == 0)) return 64;
  if (major == 8 || major == 9 || major == 10 || major == 12) return 128;
  return 0;
}

// The FP32 CUDA-core peak of the device the model runs on: SMs x SM clock x FP32 lanes x 2 (an FMA is two
// FLOPs), or --fp32-peak-tflops. UsageError when neither is available, before any work is done.
Peak fp32_cuda_peak(const ModelBenchConfig& c, int device_index) {
  if (c.fp32_peak_tflops > 0.0) return {"fp32_cuda_cores", c.fp32_peak_tflops, "--fp32-peak-tflops"};
  const kernels::cuda::DeviceQuery query = kernels::cuda::query_devices();
  const kernels::cuda::DeviceInfo& info = query.devices.at(static_cast<size_t>(device_index));
  const int lanes = fp32_lanes_per_sm(info.compute_major, info.compute_minor);
  if (lanes == 0 || info.sm_clock_khz <= 0 || info.multiprocessors <= 0)
    throw UsageError(fmt::format(
        "--device cuda: the FP32 CUDA-core peak of {} (compute capability {}.{}, {} SMs, SM clock {} kHz) "
        "cannot be computed here; give it with --fp32-peak-tflops",
        info.name, info.compute_major, info.compute_minor, info.multiprocessors, info.sm_clock_khz));
  const double tflops =
      static_cast<double>(info.multiprocessors) * info.sm_clock_khz * 1e3 * lanes * 2.0 / 1e12;
  return {"fp32_cuda_cores", tflops,
          fmt::format("{}: {} SMs x {:.3f} GHz peak SM clock x {} FP32 lanes x 2 (device query)", info.name,
                      info.multiprocessors, info.sm_clock_khz / 1e6, lanes)};
}
#endif

// Random tokens and targets, (B*T) each: the cost of a step does not depend on the text.
struct RandomBatch {
  std::vector<int32_t> tokens, targets;  // targets: -1 where a masked LM scores nothing
  int64_t scored = 0;
  model::Batch view() const { return {tokens.data(), targets.data()}; }
};

RandomBatch random_batch(const ModelBenchConfig& c) {
  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab - 1));
  std::bernoulli_distribution masked(kMaskedShare);
  RandomBatch b;
  const auto n = static_cast<size_t>(c.batch * c.context);
  b.tokens.resize(n);
  b.targets.resize(n);
  for (size_t i = 0; i < n; ++i) {
    b.tokens[i] = token(rng);
    const bool scored = c.task == "lm" || masked(rng);
    b.targets[i] = scored ? token(rng) : -1;
    b.scored += scored;
  }
  return b;
}

std::string gigabytes(double bytes) {
  return bytes >= 1e9 ? fmt::format("{:.3f} GB", bytes / 1e9) : fmt::format("{:.3f} MB", bytes / 1e6);
}

Json options_json(const ModelBenchConfig& c) {
  Json o = {{"device", c.device},
            {"precision", c.precision},
            {"task", c.task},
            {"attention", c.attention},
            {"layers", c.layers},
            {"d_model", c.d_model},
            {"heads", c.heads},
            {"mlp_hidden", c.resolved_mlp_hidden()},
            {"vocab", c.vocab},
            {"context", c.context},
            {"batch", c.batch}};
  if (c.attention == "race") {
    o["tables"] = c.tables;
    o["bits"] = c.bits;
  } else {
    o["window"] = c.window;
  }
  o["recompute"] = c.recompute;
  o["profile"] = c.profile;
  o["steps"] = c.steps;
  o["warmup"] = c.warmup;
  o["seed"] = c.seed;
  o["threads"] = c.threads;
  if (c.device == "cpu") {
    o["peak_seconds"] = c.peak_seconds;
  } else {
    o["peak_tflops"] = c.peak_tflops;
    o["fp32_peak_tflops"] = c.fp32_peak_tflops > 0.0 ? Json(c.fp32_peak_tflops) : Json(nullptr);
  }
  return o;
}

// One more optimizer step with every Ops call timed: where a step's time goes. The per-op times include the
// synchronisations around each call, so they add up to more than an unprofiled step on a GPU.
template <class Step>
Json profile_step(model::ProfiledOps& profiled, Step& optimizer_step, std::FILE* log) {
  profiled.clear();
  profiled.set_enabled(true);
  const double step_seconds = optimizer_step().first;
  profiled.set_enabled(false);
  std::vector<model::ProfiledOps::OpTotal> totals = profiled.totals();
  std::stable_sort(totals.begin(), totals.end(), [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  double timed = 0.0;
  for (const auto& t : totals) timed += t.seconds;
  fmt::print(log, "profile of one more step: {:.1f} ms, of which {:.1f} ms inside operations\n",
             step_seconds * 1e3, timed * 1e3);
  Json ops = Json::array();
  for (const auto& t : totals) {
    Json op = {{"op", t.op}, {"calls", t.calls}, {"seconds", t.seconds}, {"share", t.seconds / step_seconds}};
    std::string rate;
    if (t.flops > 0.0) {
      op["flops"] = t.flops;
      op["tflops"] = t.flops / t.seconds / 1e12;
      rate = fmt::format(", {:.4g} TFLOP/s", t.flops / t.seconds / 1e12);
    }
    fmt::print(log, "  {:<28} {:>5} calls {:>10.3f} ms {:>6.1f}%{}\n", t.op, t.calls, t.seconds * 1e3,
               100.0 * t.seconds / step_seconds, rate);
    ops.push_back(op);
  }
  std::fflush(log);
  return {{"step_seconds", step_seconds}, {"ops_seconds", timed}, {"ops", ops}};
}

}  // namespace

model::ModelSpec model_spec(const ModelBenchConfig& c) {
  if (c.d_model % c.heads != 0)
    throw UsageError(fmt::format("--heads {} does not divide --d-model {}", c.heads, c.d_model));
  if ((c.d_model / c.heads) % 2 != 0)
    throw UsageError(fmt::format("--d-model {} / --heads {} = {}: RoPE needs an even head dimension",
                                 c.d_model, c.heads, c.d_model / c.heads));
  model::ModelSpec spec;
  spec.causal = c.task == "lm";
  spec.vocab_size = c.vocab;
  spec.max_seq_len = c.context;
  spec.d_model = c.d_model;
  spec.heads = c.heads;
  spec.mlp_hidden = c.resolved_mlp_hidden();
  spec.recompute = c.recompute;
  spec.seed = c.seed;
  model::AttentionSpec attention;
  attention.kind = c.attention == "race" ? model::AttentionKind::race : model::AttentionKind::softmax;
  attention.tables = c.tables;
  attention.bits = c.bits;
  attention.window = c.window;
  spec.layers.assign(static_cast<size_t>(c.layers), attention);
  model::validate(spec);
  return spec;
}

Json run_model_bench(const ModelBenchConfig& c, const std::string& command, std::FILE* log) {
  model::ModelSpec spec = model_spec(c);
  omp_set_num_threads(c.threads);
  train::ComputeDevice device = train::open_device(c.device, "--device", 0, c.precision, "--precision");
  spec.logits_block_bytes = device.logits_block_bytes;
  const bool cuda = device.kind == train::DeviceKind::cuda;
  std::vector<Peak> peaks;
#ifdef RACE_HAVE_CUDA
  // Computed (or refused) now, so a missing clock does not surface only after the steps have run.
  if (cuda) {
    peaks.push_back(fp32_cuda_peak(c, device.cuda_index));
    peaks.push_back({"bf16_tensor_cores_dense", c.peak_tflops, "--peak-tflops"});
  }
#endif
  // Every call goes through the profiler; it only forwards until --profile's extra step enables it.
  model::ProfiledOps profiled(*device.ops);
  model::Ops& ops = profiled;

  // The memory plan, against the device's memory before anything is allocated, with race-train's budget.
  const model::MemoryPlan plan = model::plan_memory(spec, c.batch, c.context, ops.operand_type());
  const int64_t plan_bytes = plan.bytes(c.batch, c.context);
  const int64_t optimizer_bytes = 2 * int64_t{sizeof(float)} * plan.parameters;  // AdamW's m and v
  const double budget = device.budget_bytes(1);
  const std::string budget_text = fmt::format("{} ({})", device.budget_description(1), gigabytes(budget));
  if (static_cast<double>(plan_bytes + optimizer_bytes) > budget)
    throw UsageError(
        fmt::format("--context {} x --batch {}: the memory plan needs {} with AdamW's moments, more "
                    "than {}; lower --context or --batch{}",
                    c.context, c.batch, gigabytes(static_cast<double>(plan_bytes + optimizer_bytes)),
                    budget_text, c.recompute ? "" : ", or add --recompute"));

  model::Gpt gpt(ops, spec, c.batch, c.context);
  gpt.initialize();
  const int64_t n_params = gpt.parameter_count();
  float* adam_m = ops.allocate(n_params);  // (n_params) AdamW first moments, zero
  float* adam_v = ops.allocate(n_params);  // (n_params) second moments, zero
  const std::vector<model::ParamRange> ranges =
      model::adamw_ranges(gpt.params(), [](const model::ParamInfo& p) { return p.weight_decay; });
  const int64_t allocated = ops.allocated_bytes();
  const double flops_per_token = model::training_flops_per_token(spec, gpt.params(), c.context);
  const RandomBatch batch = random_batch(c);
  const float loss_scale = 1.f / static_cast<float>(std::max<int64_t>(1, batch.scored));

  fmt::print(
      log,
      "race-bench model: {} {} layers, d_model {}, {} heads, MLP {}, vocab {}, {} attention, B={} T={}{}; "
      "{} parameters, {:.3f} MFLOP per token; on {}\n"
      "memory plan: {} (parameters, gradients, activations, scratch) + {} (AdamW) = {}, within {}; "
      "allocated {}\n",
      c.task, c.layers, c.d_model, c.heads, c.resolved_mlp_hidden(), c.vocab, c.attention, c.batch, c.context,
      c.recompute ? ", recompute" : "", n_params, flops_per_token / 1e6, device.description,
      gigabytes(static_cast<double>(plan_bytes)), gigabytes(static_cast<double>(optimizer_bytes)),
      gigabytes(static_cast<double>(plan_bytes + optimizer_bytes)), budget_text,
      gigabytes(static_cast<double>(allocated)));
  std::fflush(log);

  // One optimizer step as race-train's loop takes it with one micro-batch and one rank (its AdamW loop,
  // repeated here because trainer.cpp keeps it inside run_training): the loss is the mean over the scored
  // targets, the gradients are clipped to norm 1 and matrices decay.
  int64_t step = 0;
  auto optimizer_step = [&] {
    const auto start = Clock::now();
    gpt.zero_gradients();
    const model::LossSum loss = gpt.forward_backward(batch.view(), loss_scale);
    const double norm = ops.grad_norm(gpt.gradients(), n_params);
    if (!std::isfinite(loss.sum) || !std::isfinite(norm))
      fail("race-bench model: step {}: the loss ({}) or the gradient norm ({}) is not finite", step + 1,
           loss.mean(), norm);
    const float clip = norm > kGradClip ? static_cast<float>(kGradClip / norm) : 1.f;
    ++step;
    model::AdamWStep adam;
    adam.lr = kLearningRate;
    adam.beta1 = kBeta1;
    adam.beta2 = kBeta2;
    adam.eps = kEps;
    adam.weight_decay = kWeightDecay;
    adam.step = step;
    adam.grad_scale = clip;
    gpt.adamw(adam_m, adam_v, ranges, adam);
    // CUDA launches AdamW asynchronously; copy_to_host waits for it, so the step's time is its work.
    float first = 0.f;
    ops.copy_to_host(&first, gpt.parameter_values(), 1);
    return std::pair{std::chrono::duration<double>(Clock::now() - start).count(), loss.mean()};
  };

  for (int w = 0; w < c.warmup; ++w) {
    const auto [seconds, loss] = optimizer_step();
    fmt::print(log, "warm-up step {}: {:.1f} ms, loss {:.4f}\n", w + 1, seconds * 1e3, loss);
    std::fflush(log);
  }
  std::vector<double> seconds_all, ms_all, losses;
  for (int s = 0; s < c.steps; ++s) {
    const auto [seconds, loss] = optimizer_step();
    seconds_all.push_back(seconds);
    ms_all.push_back(seconds * 1e3);
    losses.push_back(loss);
    fmt::print(log, "step {}: {:.1f} ms, loss {:.4f}\n", s + 1, seconds * 1e3, loss);
    std::fflush(log);
  }
  double seconds = 0.0;
  for (const double s : seconds_all) seconds += s;
  const int64_t tokens_per_step = c.batch * c.context;
  const double tokens_per_s = static_cast<double>(tokens_per_step * c.steps) / seconds;
  const double achieved_tflops = flops_per_token * tokens_per_s / 1e12;

  Json profile;
  if (c.profile) profile = profile_step(profiled, optimizer_step, log);

  // The CPU's peak is measured after the steps, in the same run, so both see the same load on a shared
  // machine.
  if (!cuda) {
    const double gflops = measure_product_gflops(c.threads, c.peak_seconds);
    peaks.push_back({"cpu_row_product", gflops / 1e3,
                     fmt::format("measured in this run: race-bench peak's row product (kernels' 8 x 32 FMA "
                                 "block, operands in cache), {} threads, {:g} s",
                                 c.threads, c.peak_seconds)});
  }

  fmt::print(log, "{:.1f} tokens/s, median {:.1f} ms per step, {:.4g} TFLOP/s", tokens_per_s, median(ms_all),
             achieved_tflops);
  Json peaks_json = Json::array();
  for (const Peak& p : peaks) {
    const double mfu = achieved_tflops / p.tflops;
    fmt::print(log, "; MFU {:.2f}% of {} ({:.4g} TFLOP/s)", 100.0 * mfu, p.name, p.tflops);
    peaks_json.push_back({{"name", p.name}, {"tflops", p.tflops}, {"source", p.source}, {"mfu", mfu}});
  }
  fmt::print(log, "\n");
  std::fflush(log);

  Json results = {{"precision", device.precision},
                  {"steps", c.steps},
                  {"warmup_steps", c.warmup},
                  {"tokens_per_step", tokens_per_step},
                  {"seconds", seconds},
                  {"tokens_per_s", tokens_per_s},
                  {"ms_per_step", median(ms_all)},
                  {"ms_per_step_all", ms_all},
                  {"losses", losses},
                  {"achieved_tflops", achieved_tflops}};
  if (!cuda) results["peak_resident_bytes"] = peak_resident_bytes();
  if (c.profile) results["profile"] = profile;
  Json notes = Json::array();
  notes.push_back(
      "flops_per_token: 6 per matrix weight (the tied LM head included) plus attention, as race-train logs "
      "it; "
      "--recompute's repeated forwards are not counted (the MFU convention)");
  if (cuda && device.precision == "bf16")
    notes.push_back(
        "the linear layers' products run on tensor cores (cuBLASLt on bf16 operands, fp32 sums); the "
        "activations only products and attention read, their gradients and a weight copy are stored in bf16, "
        "every sum is fp32: bf16_tensor_cores_dense is the peak the products are held to");
  else if (cuda)
    notes.push_back(
        "the model computes in fp32 on CUDA cores (cuBLASLt with CUBLAS_COMPUTE_32F and the project's own "
        "kernels; no tensor cores, no TF32): fp32_cuda_cores is the peak it can reach");
  return {{"tool", "race-bench model"},
          {"date", utc_timestamp()},
          {"command", command},
          {"machine",
           {{"cpu_model", cpu_model()},
            {"cores", cpu_count()},
            {"threads", c.threads},
            {"memory_bytes", physical_memory_bytes()},
            {"device", device.description}}},
          {"options", options_json(c)},
          {"model",
           {{"parameters", n_params},
            {"flops_per_token", flops_per_token},
            {"memory_plan_bytes", plan_bytes},
            {"optimizer_bytes", optimizer_bytes},
            {"planned_bytes", plan_bytes + optimizer_bytes},
            {"memory_budget_bytes", budget},
            {"allocated_bytes", allocated}}},
          {"results", results},
          {"peaks", peaks_json},
          {"notes", notes}};
}

}  // namespace race::bench
