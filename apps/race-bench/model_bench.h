// race-bench model: the training throughput of a whole GPT built from command-line shape options, on the CPU
// or a GPU, fed random tokens. Times the optimizer steps race-train takes (zero the gradients, forward and
// backward, the global gradient norm, AdamW on every parameter) and reports tokens/s, the training FLOPs per
// token (model/flops.h, the count race-train logs), the achieved TFLOP/s and the MFU against the device's
// peaks, with the memory plan beside what the device actually allocated.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "model/gpt.h"

namespace race::bench {

struct ModelBenchConfig {
  std::string device = "cpu";      // "cpu" or "cuda"
  std::string precision = "auto";  // matrix products: "auto" (cuda bf16, cpu fp32), "fp32" or "bf16"
  std::string task = "lm";         // lm: causal GPT, every position scored; mlm: bidirectional, 15% scored
  std::string attention = "race";  // every layer: "race" or "softmax"
  std::int64_t layers = 12, d_model = 768, heads = 12;  // GPT-2 small (124M) by default
  std::int64_t mlp_hidden = 0;                          // 0: 4 x d_model
  std::int64_t vocab = 50304;                           // GPT-2's 50257, padded to a multiple of 64
  std::int64_t context = 1024, batch = 1;               // T, B
  int tables = 3, bits = 3;                             // race: L, P
  std::int64_t window = 0;                              // softmax: sliding window W, 0 = full attention
  bool recompute = false;
  bool profile = false;  // one more step after the timed ones, each Ops call timed (model/profiled_ops.h)
  int steps = 3, warmup = 1;
  std::uint64_t seed = 0;  // the model's initialisation and hyperplanes, and the random tokens
  int threads = 1;
  double peak_seconds = 1.0;      // cpu: time of the in-run peak measurement
  double peak_tflops = 989.0;     // cuda: the dense BF16 tensor-core peak (H200 SXM)
  double fp32_peak_tflops = 0.0;  // cuda: the FP32 CUDA-core peak; 0 = computed from the device query

  std::int64_t resolved_mlp_hidden() const { return mlp_hidden > 0 ? mlp_hidden : 4 * d_model; }
};

// The model the options describe. UsageError naming the option for a shape the model cannot take (--heads
// not dividing --d-model, an odd head dimension under RoPE).
model::ModelSpec model_spec(const ModelBenchConfig& config);

// Opens the device, checks the memory plan (with AdamW's two moments) against its memory before anything is
// allocated, builds and initialises the model, runs `warmup` untimed and `steps` timed optimizer steps, and
// measures or computes the peaks. Progress and the summary go to `log`. Returns the report:
// {"tool": "race-bench model", "date", "command", "machine": {"cpu_model", "cores", "threads",
// "memory_bytes",
//  "device"}, "options": {the config, mlp_hidden resolved}, "model": {"parameters", "flops_per_token",
//  "memory_plan_bytes" (plan_memory), "optimizer_bytes", "planned_bytes" (their sum), "memory_budget_bytes",
//  "allocated_bytes" (Ops::allocated_bytes after building)}, "results": {"steps", "warmup_steps",
//  "tokens_per_step", "seconds" (the timed steps), "tokens_per_s" (B*T*steps / seconds), "ms_per_step"
//  (median), "ms_per_step_all", "losses", "achieved_tflops" (flops_per_token * tokens_per_s), on cpu
//  "peak_resident_bytes"}, "peaks": [{"name", "tflops", "source", "mfu" (achieved / tflops)}], "notes"}.
nlohmann::ordered_json run_model_bench(const ModelBenchConfig& config, const std::string& command,
                                       std::FILE* log);

}  // namespace race::bench
